// flover_fuzz_seeds OUT_DIR: writes the seed corpus of every harness into
// OUT_DIR/<harness>/, built from the test builders: scripts of client and worker
// messages (tests/coordinator/coordinator_test_config.h, in the record format of
// fuzz_records.h), configs (the test config through the writer), small llama2.c and
// GGUF models (llama and qwen2) and safetensors files (tests/model/), the fuzz vocabulary
// and texts. scripts/fuzz.sh adds the configs of configs/, the headers of the GGUF files
// of tests/fixtures/models and, when it finds them, stories260K's tokenizer and GGUF
// header.
// Nothing here is committed: the seeds follow the protocol and formats of the build.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/cluster_config_writer.h"
#include "common/protocol.h"
#include "tests/coordinator/coordinator_test_config.h"
#include "tests/fuzz/fuzz_records.h"
#include "tests/fuzz/fuzz_vocabulary.h"
#include "tests/model/gguf_writer.h"
#include "tests/model/safetensors_writer.h"
#include "tests/model/test_model_files.h"

namespace flover::fuzzing {
namespace {

namespace fs = std::filesystem;
namespace ct = coordinator_testing;

class SeedDir {
 public:
  SeedDir(const fs::path& root, const std::string& harness) : dir_(root / harness) { fs::create_directories(dir_); }

  void Write(const std::string& name, const std::string& bytes) {
    std::ofstream out(dir_ / name, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "flover_fuzz_seeds: cannot write %s\n", (dir_ / name).c_str());
      std::exit(1);
    }
  }

 private:
  fs::path dir_;
};

// Op bytes of the client harness (fuzz_client_messages.cc): client, mode, answers
// (0, 1, 3, 8 plans), wait (0, 10, 60, 500 ms).
uint8_t ClientOp(int client, int mode = 0, int answers = 3, int wait = 0) {
  return static_cast<uint8_t>(client | mode << 2 | answers << 4 | wait << 6);
}

void ClientSeeds(const fs::path& root) {
  SeedDir d(root, "fuzz_client_messages");
  const std::string submit = Serialize(ct::SubmitMessage("a", {1, 300, 301}, 5, true));
  d.Write("submit", EncodeRecord(ClientOp(0), submit));
  d.Write("submit-quiet", EncodeRecord(ClientOp(1), Serialize(ct::SubmitMessage("q", {1, 2, 3, 4, 5}, 12, false))));

  proto::ClientMessage text;
  proto::SubmitRequest* s = text.mutable_submit();
  s->set_client_request_id("text");
  s->set_text("Once upon a time \xC3\xA9t\xC3\xA9");
  s->set_stream(true);
  s->set_priority(1);
  s->set_timeout_ms(100);
  s->mutable_sampling()->set_temperature(0.8f);
  s->mutable_sampling()->set_top_k(5);
  s->mutable_sampling()->set_top_p(0.9f);
  s->mutable_sampling()->set_seed(7);
  s->mutable_stop()->set_max_tokens(20);
  s->mutable_stop()->add_stop_strings("the");
  s->mutable_stop()->add_stop_strings("\xC3\xA9");
  s->mutable_stop()->add_stop_token_ids(44);
  d.Write("submit-text-stop", EncodeRecord(ClientOp(2, 0, 3, 1), Serialize(text)));

  proto::ClientMessage status;
  status.mutable_status();
  d.Write("status", EncodeRecord(ClientOp(3), Serialize(status)));
  d.Write("submit-cancel-status", EncodeRecord(ClientOp(0, 0, 1), submit) +
                                      EncodeRecord(ClientOp(0), Serialize(ct::CancelMessage("a"))) +
                                      EncodeRecord(ClientOp(1), Serialize(status)));
  d.Write("submit-twice-leave", EncodeRecord(ClientOp(0, 0, 0), submit) + EncodeRecord(ClientOp(0, 3), submit));
  d.Write("two-frames", EncodeRecord(ClientOp(0, 1), submit));
  d.Write("wait-for-deadline",
          EncodeRecord(ClientOp(2, 0, 1), Serialize(text)) + EncodeRecord(ClientOp(1, 0, 0, 2), Serialize(status)));
  proto::ClientMessage old = ct::SubmitMessage("old", {1, 2}, 3, false);
  old.set_protocol_version(1);
  d.Write("old-version", EncodeRecord(ClientOp(0), old.SerializeAsString()));
}

// Op bytes of the worker harness (fuzz_worker_messages.cc): event, connection, wait.
uint8_t WorkerOp(int event, int who, int wait = 0) { return static_cast<uint8_t>(event | who << 2 | wait << 5); }

void WorkerSeeds(const fs::path& root) {
  SeedDir d(root, "fuzz_worker_messages");
  const std::string tokens("\x2c\x01\x2d\x01\x02\x00", 6);  // 300, 301, EOS
  d.Write("answer", EncodeRecord(WorkerOp(2, 0), tokens) + EncodeRecord(WorkerOp(2, 0), tokens));
  d.Write("heartbeat", EncodeRecord(WorkerOp(0, 1, 2), Serialize(ct::HeartbeatMessage(0, 1))));
  d.Write("register-stranger", EncodeRecord(WorkerOp(0, 4), Serialize(ct::RegisterMessage(0, 1, 4242))));
  d.Write("ready-again", EncodeRecord(WorkerOp(0, 2), Serialize(ct::ReadyMessage(1, 0, ct::TestModel(), 8))));

  proto::WorkerMessage set;
  set.mutable_store_set()->set_key("gloo/0");
  set.mutable_store_set()->set_value("address");
  proto::WorkerMessage get;
  get.mutable_store_get()->set_key("gloo/0");
  get.mutable_store_get()->set_timeout_ms(100);
  d.Write("store", EncodeRecord(WorkerOp(0, 3), Serialize(get)) + EncodeRecord(WorkerOp(0, 2), Serialize(set)) +
                       EncodeRecord(WorkerOp(0, 1, 4), Serialize(get)));

  proto::WorkerMessage failure;
  failure.mutable_failure()->set_replica(1);
  failure.mutable_failure()->set_message("collective failed");
  d.Write("failure", EncodeRecord(WorkerOp(0, 2), Serialize(failure)) + EncodeRecord(WorkerOp(2, 0), tokens));

  // The first plan of replica 0 has seq 1 and serves the first requests (ids 1, 2).
  proto::WorkerMessage result;
  proto::StepResult* r = result.mutable_step_result();
  r->set_replica(0);
  r->set_seq(1);
  r->set_step_seconds(0.001);
  for (uint64_t id : {1, 2}) {
    proto::TokenOutput* o = r->add_outputs();
    o->set_request_id(id);
    o->set_token(300);
  }
  d.Write("result", EncodeRecord(WorkerOp(1, 0), Serialize(result)));
  d.Write("result-control", EncodeRecord(WorkerOp(0, 0), Serialize(result)));
  proto::WorkerMessage error = result;
  error.mutable_step_result()->set_error("device lost");
  d.Write("result-error", EncodeRecord(WorkerOp(1, 5), Serialize(error)));
  d.Write("kill-restart", EncodeRecord(WorkerOp(3, 1), "") + EncodeRecord(WorkerOp(3, 1, 7), "") +
                              EncodeRecord(WorkerOp(2, 0), tokens));
}

void ConfigSeeds(const fs::path& root) {
  SeedDir d(root, "fuzz_cluster_config");
  ct::Options o;
  d.Write("test.yaml", ToYaml(ct::TestConfig(o)));
  o.replicas = 2;
  o.tensor = 2;
  o.policy = "dynamic";
  o.tokenizer = "tok.bin";
  d.Write("test-2x2.yaml", ToYaml(ct::TestConfig(o)));
}

// The smallest model with everything (2 heads, tensor parallelism of 2 possible).
ModelSpec TinySpec(bool shared_classifier) {
  return ModelSpec{.dim = 8,
                   .hidden_dim = 8,
                   .n_layers = 1,
                   .n_heads = 2,
                   .n_kv_heads = 2,
                   .vocab_size = 6,
                   .max_seq_len = 4,
                   .shared_classifier = shared_classifier};
}

void ModelSeeds(const fs::path& root) {
  SeedDir bin(root, "fuzz_llama2c");
  SeedDir gguf(root, "fuzz_gguf");
  for (bool shared : {true, false}) {
    const ModelWeights w = testing::RandomWeights(TinySpec(shared), 1);
    const std::string kind = shared ? "shared" : "separate";
    bin.Write("tiny-" + kind + ".bin", testing::Llama2cBytes(w));
    gguf.Write("tiny-" + kind + "-f32.gguf", testing::LlamaGguf(w).Serialize());
    gguf.Write("tiny-" + kind + "-f16.gguf", testing::LlamaGguf(w, /*f16=*/true).Serialize());
  }
  // Architecture qwen2: q/k/v biases, Q/K rows in half-split order.
  ModelSpec qwen2 = TinySpec(/*shared_classifier=*/true);
  qwen2.arch = "qwen2";
  qwen2.qkv_bias = true;
  gguf.Write("tiny-qwen2-f32.gguf", testing::Qwen2Gguf(testing::RandomWeights(qwen2, 2)).Serialize());
}

void SafetensorsSeeds(const fs::path& root) {
  SeedDir d(root, "fuzz_safetensors");
  const std::vector<float> values = {1.0f, -2.5f, 0.0f, 3.25f, -0.125f, 65504.0f};
  testing::SafetensorsWriter all;
  all.SetMetadata({{"format", "pt"}});
  all.AddF32("model.embed_tokens.weight", {2, 3}, values);
  all.AddF16("model.layers.0.self_attn.q_proj.weight", {3, 2}, values);
  all.AddBF16("lm_head.bias", {6}, values);
  all.AddRaw("position_ids", "I64", {1, 2}, std::string("\1\0\0\0\0\0\0\0\2\0\0\0\0\0\0\0", 16));
  all.AddRaw("empty", "F32", {0, 4}, "");
  all.AddRaw("scalar", "F32", {}, std::string("\0\0\x80\x3f", 4));
  d.Write("mixed.safetensors", all.Serialize());
  testing::SafetensorsWriter one;
  one.AddBF16("w", {2, 2}, {1.0f, 2.0f, 3.0f, 4.0f});
  d.Write("one-bf16.safetensors", one.Serialize());
}

void TokenizerSeeds(const fs::path& root) {
  SeedDir file(root, "fuzz_tokenizer_file");
  file.Write("fuzz-vocabulary.bin", FuzzVocabularyFile());
  SeedDir text(root, "fuzz_tokenizer_text");
  text.Write("story", "Once upon a time, there was a little girl named Lily.");
  text.Write("utf8", "\xC3\xA9t\xC3\xA9 \xE6\x97\xA5\xE6\x97\xA5 \xF0\x9F\x98\x80 \xE2\x96\x81");
  text.Write("invalid-utf8", std::string("\xFF\xC3 \x80\x80\x80\x80\0<0x41>", 13));
  text.Write("spaces", "  the  \n\t end ");
}

}  // namespace
}  // namespace flover::fuzzing

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: flover_fuzz_seeds OUT_DIR\n");
    return 2;
  }
  const std::filesystem::path root = argv[1];
  flover::fuzzing::ClientSeeds(root);
  flover::fuzzing::WorkerSeeds(root);
  flover::fuzzing::ConfigSeeds(root);
  flover::fuzzing::ModelSeeds(root);
  flover::fuzzing::SafetensorsSeeds(root);
  flover::fuzzing::TokenizerSeeds(root);
  return 0;
}

// Fuzzes what workers (and anyone who can reach the control socket) send to the
// coordinator: CoordinatorCore::OnWorkerMessage (registration, ready, the rendezvous
// store, heartbeats, failures, step results), against a running cluster: FuzzCluster with two
// ready replicas of two ranks, and three requests in flight (streamed token ids, a
// streamed text prompt with a stop string, a non-streamed one).
//
// Input: records (fuzz_records.h). The op byte: bits 0-1 the event:
//   0  the payload as a WorkerMessage on the control socket from connection
//      bits 2-4: 0-3 are the scripted ranks (replica-major), 4-7 four strangers;
//   1  the payload as the StepResult of a WorkerMessage on the control socket, from the
//      same connections (only the registered rank 0 of its replica may send one);
//   2  the scripted ranks 0 answer the plans they hold, with tokens read from the
//      payload (u16 each, modulo vocab + 64: some are outside the vocabulary);
//   3  scripted rank (bits 2-4 modulo 4) closes its connection, or, when gone, is
//      restarted;
// bits 5-7: simulated milliseconds to let pass afterwards (x40). At the end of the input
// the requests left run to their end (tokens from the last op-2 payload), client 0 asks
// for the status, and the coordinator stops.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tests/fuzz/core_fuzz_cluster.h"
#include "tests/fuzz/fuzz_records.h"

using namespace flover;
using namespace flover::fuzzing;

namespace {

// A serialized WorkerMessage whose step_result (field 8) holds `payload`'s bytes.
std::string AsStepResult(std::string_view payload) {
  std::string m(1, static_cast<char>((8 << 3) | 2));  // field 8, length-delimited
  for (uint64_t n = payload.size(); ; n >>= 7) {     // varint length
    if (n < 0x80) {
      m += static_cast<char>(n);
      break;
    }
    m += static_cast<char>((n & 0x7f) | 0x80);
  }
  return m.append(payload);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzCluster cluster(FuzzCluster::Shape{.replicas = 2, .tensor = 2});
  SimClient& client = cluster.client(0);
  client.Submit("ids", {1, 300, 301, 302}, 6, /*stream=*/true);
  cluster.MaxTokens(0, "ids", 6);
  proto::ClientMessage text;
  text.mutable_submit()->set_client_request_id("text");
  text.mutable_submit()->set_text("Once upon a time");
  text.mutable_submit()->mutable_stop()->set_max_tokens(8);
  text.mutable_submit()->mutable_stop()->add_stop_strings("the");
  text.mutable_submit()->set_stream(true);
  client.Send(text);
  cluster.MaxTokens(0, "text", 8);
  cluster.client(1).Submit("quiet", {1, 2, 3}, 4, /*stream=*/false);
  cluster.MaxTokens(1, "quiet", 4);

  auto sender = [&](int who) -> SimWorker& {
    return who < cluster.n_workers() ? cluster.worker(who) : cluster.stranger(who % FuzzCluster::kStrangers);
  };

  std::string token_bytes;
  RecordReader reader(data, size);
  for (Record r; reader.Next(&r);) {
    const int who = (r.op >> 2) & 7;
    switch (r.op & 3) {
      case 0: sender(who).SendRaw(std::string(r.payload)); break;
      case 1: sender(who).SendRaw(AsStepResult(r.payload)); break;
      case 2: {
        token_bytes = std::string(r.payload);
        TokenSource tokens(token_bytes, cluster.vocab_size() + 64);
        cluster.AnswerPlans(tokens, 4);
        break;
      }
      case 3: cluster.KillOrRestart(who % cluster.n_workers()); break;
    }
    if (const int wait_ms = (r.op >> 5) * 40; wait_ms > 0) cluster.sim().Advance(std::chrono::milliseconds(wait_ms));
    cluster.CheckReceived();
  }
  TokenSource tokens(token_bytes, cluster.vocab_size());
  cluster.Finish(tokens, 100);
  return 0;
}

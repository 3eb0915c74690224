// Runs the real `flover bench` binary: on clusters it starts itself from a config (the
// real stories260K model, TP 1, free ports), under two policies, and checks its JSON;
// a policy whose coordinator refuses to start fails alone; bad flags are clear errors.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_paths.h"

namespace {

namespace fs = std::filesystem;

struct CliRun {
  int exit_code;
  std::string out;
  std::string err;
};

// Runs `flover ARGS`; its stderr goes through `err_file` (one per test: tests run in parallel).
CliRun Flover(const std::string& args, const std::string& err_file) {
  const std::string cmd = std::string(FLOVER_BIN) + " " + args + " 2>" + err_file;
  CliRun r{-1, "", ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  for (size_t n; (n = fread(buf.data(), 1, buf.size(), p)) > 0;) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream e(err_file);
  r.err.assign(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
  return r;
}

class FloverBenchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("flover_bench_test_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    ASSERT_TRUE(fs::exists(flover::testing::Stories260kBin())) << "missing " << flover::testing::Stories260kBin();
    std::ofstream(Config()) << "cluster: {name: bench-test}\n"
                               "endpoints: {client: 'tcp://127.0.0.1:*', control: 'tcp://127.0.0.1:*',\n"
                               "            plans: 'tcp://127.0.0.1:*'}\n"
                               "model: {path: '"
                            << flover::testing::Stories260kBin()
                            << "'}\n"
                               "parallel: {replicas: 1, tensor: 1}\n"
                               "workers: [{replica: 0, rank: 0, threads: 1}]\n"
                               "kv_cache: {memory_mib: 16}\n"
                               "heartbeat: {interval_ms: 100, timeout_ms: 30000}\n";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string Config() const { return (dir_ / "cluster.yaml").string(); }
  CliRun Flover(const std::string& args) const { return ::Flover(args, (dir_ / "stderr.txt").string()); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  static nlohmann::json ReadJson(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  }

  fs::path dir_;
};

TEST_F(FloverBenchTest, RunsTheWorkloadUnderEachPolicyAndWritesJson) {
  const std::string json = Path("bench.json");
  CliRun r = Flover("bench --config " + Config() +
                    " --requests 4 --interval-ms 10 --output-len 8 --ignore-eos --policies fused,sequential --json " +
                    json);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const nlohmann::json runs = ReadJson(json);
  ASSERT_TRUE(runs.is_array()) << runs;
  ASSERT_EQ(runs.size(), 2u) << runs;
  EXPECT_EQ(runs[0]["policy"], "fused");
  EXPECT_EQ(runs[1]["policy"], "sequential");
  for (const nlohmann::json& run : runs) {
    SCOPED_TRACE(run["policy"].get<std::string>());
    EXPECT_FALSE(run.contains("error")) << run["error"];
    EXPECT_EQ(run["completed"], 4);
    EXPECT_EQ(run["failed"], 0);
    EXPECT_GT(run["overall_latency_s"].get<double>(), 0.0);
    EXPECT_GT(run["single_latency_s"].get<double>(), 0.0);
    EXPECT_GT(run["avg_over_single"].get<double>(), 0.0);
    EXPECT_GT(run["output_tokens_per_s"].get<double>(), 0.0);
    EXPECT_GE(run["avg_requests_per_step"].get<double>(), 1.0);
    EXPECT_GT(run["avg_step_compute_s"].get<double>(), 0.0) << "workers report their compute per step";
    EXPECT_LT(run["avg_step_compute_s"].get<double>(), run["overall_latency_s"].get<double>())
        << "in seconds: every step ran within the run";
    EXPECT_GE(run["avg_step_wait_s"].get<double>(), 0.0);
    EXPECT_LT(run["avg_step_wait_s"].get<double>(), run["overall_latency_s"].get<double>());
    EXPECT_EQ(run["output_tokens"], 32);
    EXPECT_EQ(run["workload"]["requests"], 4);
    EXPECT_EQ(run["workload"]["prompt_len"], 8);
    EXPECT_EQ(run["workload"]["vocab_size"], 512);
    ASSERT_EQ(run["requests"].size(), 4u);
    for (const nlohmann::json& req : run["requests"]) {
      EXPECT_EQ(req["output_tokens"], 8) << req;
      EXPECT_EQ(req["token_times_s"].size(), 8u) << req;
      EXPECT_EQ(req["prompt_tokens"], 8) << req;
      EXPECT_EQ(req["finish_reason"], "length") << req;
      EXPECT_LE(req["submit_s"].get<double>(), req["first_token_s"].get<double>()) << req;
      EXPECT_LE(req["first_token_s"].get<double>(), req["done_s"].get<double>()) << req;
    }
  }
  // The results table on stdout: one row per policy and the speed-up of fused.
  EXPECT_NE(r.out.find("fused speed-up"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\nfused "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\nsequential "), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("4/4 done"), std::string::npos) << r.err;  // the progress bar
}

TEST_F(FloverBenchTest, APolicyThatCannotStartFailsAloneAndTheOthersRun) {
  // A coordinator that refuses the "dynamic" cluster (as one without that policy does)
  // and is the real one otherwise.
  const fs::path bin = dir_ / "bin";
  fs::create_directories(bin);
  std::ofstream(bin / "flover-coordinator")
      << "#!/bin/sh\n"
         "case \"$2\" in *dynamic.yaml) echo \"flover-coordinator: scheduler.policy: 'dynamic' is not implemented "
         "by flover-coordinator yet\" >&2; exit 2;; esac\n"
         "exec "
      << FLOVER_COORDINATOR_BIN << " \"$@\"\n";
  fs::create_symlink(FLOVER_WORKER_BIN, bin / "flover-worker");
  fs::permissions(bin / "flover-coordinator", fs::perms::owner_all);
  const std::string json = Path("bench.json");
  CliRun r = Flover("bench --config " + Config() + " --bin-dir " + bin.string() +
                    " --requests 2 --output-len 4 --ignore-eos --policies dynamic,fused --json " + json);
  EXPECT_EQ(r.exit_code, 1) << r.err << r.out;
  EXPECT_NE(r.err.find("flover bench [dynamic]: FAILED"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("'dynamic' is not implemented"), std::string::npos) << r.out;
  const nlohmann::json runs = ReadJson(json);
  ASSERT_EQ(runs.size(), 2u) << runs;
  EXPECT_NE(runs[0]["error"].get<std::string>().find("'dynamic' is not implemented"), std::string::npos) << runs[0];
  EXPECT_EQ(runs[1]["policy"], "fused");
  EXPECT_EQ(runs[1]["completed"], 2) << runs[1];
}

TEST_F(FloverBenchTest, BadFlagsAreClearErrors) {
  CliRun unknown = Flover("bench --config " + Config() + " --policies fused,fastest --requests 1");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("unknown policy 'fastest'"), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("fused, dynamic, instances, sequential"), std::string::npos) << unknown.err;

  CliRun reversed = Flover("bench --config " + Config() + " --output-len 5:2");
  EXPECT_EQ(reversed.exit_code, 2);
  EXPECT_NE(reversed.err.find("--output-len 5:2"), std::string::npos) << reversed.err;

  CliRun garbage = Flover("bench --config " + Config() + " --output-len many");
  EXPECT_EQ(garbage.exit_code, 2);
  EXPECT_NE(garbage.err.find("--output-len many"), std::string::npos) << garbage.err;

  CliRun dtype = Flover("bench --config " + Config() + " --dtype q9_9 --requests 1");
  EXPECT_EQ(dtype.exit_code, 2);
  EXPECT_NE(dtype.err.find("--dtype 'q9_9' is not auto, fp32, fp16, bf16, q8_0, q4_0 or q4_k"), std::string::npos)
      << dtype.err;

  CliRun both = Flover("bench --config " + Config() + " --rate 5 --interval-ms 3");
  EXPECT_NE(both.exit_code, 0);
  EXPECT_NE(both.err.find("excludes"), std::string::npos) << both.err;

  CliRun no_cluster = Flover("bench --policies fused");
  EXPECT_NE(no_cluster.exit_code, 0);
  EXPECT_NE(no_cluster.err.find("--config"), std::string::npos) << no_cluster.err;

  CliRun missing = Flover("bench --config " + Path("nope.yaml"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("nope.yaml"), std::string::npos) << missing.err;
}

// The transport of --api openai against a scripted OpenAI-style SSE server (a fake of
// the server side only; tests/client/bench_openai_fake_server.py says what it sends).
class FloverBenchOpenAiTest : public FloverBenchTest {
 protected:
  void StartServer(const std::string& mode) {
    const std::string port_file = Path("port.txt");
    server_ = fork();
    ASSERT_GE(server_, 0);
    if (server_ == 0) {
      FILE* out = freopen(port_file.c_str(), "w", stdout);
      if (out == nullptr) _exit(127);
      execlp("python3", "python3", FLOVER_BENCH_FAKE_OPENAI_SERVER, "--log", Log().c_str(), "--mode", mode.c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 600 && port_.empty(); ++i) {  // up to 60 s for Python to start
      std::ifstream in(port_file);
      std::string line;
      if (std::getline(in, line) && !line.empty()) port_ = line;
      else std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_FALSE(port_.empty()) << "the fake server did not start";
  }
  void TearDown() override {
    if (server_ > 0) {
      kill(server_, SIGTERM);
      waitpid(server_, nullptr, 0);
    }
    FloverBenchTest::TearDown();
  }
  std::string Log() const { return Path("requests.jsonl"); }
  std::string Endpoint() const { return "http://127.0.0.1:" + port_; }
  std::vector<nlohmann::json> LoggedRequests() const {
    std::vector<nlohmann::json> lines;
    std::ifstream in(Log());
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
  }

  pid_t server_ = -1;
  std::string port_;
};

TEST_F(FloverBenchOpenAiTest, StreamsTokenIdPromptsUnderTheConcurrencyLimitAndReportsGoodput) {
  StartServer("ok");
  const std::string json = Path("bench.json");
  CliRun r = Flover("bench --api openai --endpoint " + Endpoint() +
                    " --requests 6 --max-concurrency 2 --prompt-len 4:12 --output-len 5 --ignore-eos"
                    " --slo-ttft-ms 60000 --slo-tpot-ms 60000 --label fake --json " + json);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const nlohmann::json runs = ReadJson(json);
  ASSERT_EQ(runs.size(), 1u) << runs;
  const nlohmann::json& run = runs[0];
  EXPECT_EQ(run["policy"], "fake");
  EXPECT_EQ(run["api"], "openai");
  EXPECT_EQ(run["model"], "fake-model");
  EXPECT_EQ(run["completed"], 6);
  EXPECT_EQ(run["failed"], 0);
  EXPECT_EQ(run["output_tokens"], 30);
  EXPECT_EQ(run["workload"]["vocab_size"], 512) << "from the server's /v1/models";
  EXPECT_EQ(run["workload"]["max_concurrency"], 2);
  EXPECT_EQ(run["workload"]["prompt_len_min"], 4);
  EXPECT_EQ(run["workload"]["prompt_len_max"], 12);
  EXPECT_FALSE(run.contains("avg_requests_per_step")) << "an HTTP server reports no steps";
  EXPECT_EQ(run["goodput"]["good_requests"], 6);
  EXPECT_EQ(run["goodput"]["share"], 1.0);
  EXPECT_EQ(run["goodput"]["slo_ttft_s"], 60.0);
  EXPECT_GT(run["goodput"]["request_rate"].get<double>(), 0.0);
  for (const nlohmann::json& req : run["requests"]) {
    EXPECT_EQ(req["output_tokens"], 5) << req;
    EXPECT_EQ(req["finish_reason"], "length") << req;
    EXPECT_EQ(req["token_times_s"].size(), 5u) << "one token per chunk, every split event counted once: " << req;
    EXPECT_GE(req["prompt_tokens"].get<int>(), 4) << req;
    EXPECT_LE(req["prompt_tokens"].get<int>(), 12) << req;
    EXPECT_LE(req["submit_s"].get<double>(), req["first_token_s"].get<double>()) << req;
  }
  EXPECT_NE(r.out.find("goodput %"), std::string::npos) << r.out;

  // What the server received: 2 warm-up/single requests and the 6 of the workload.
  const std::vector<nlohmann::json> logged = LoggedRequests();
  ASSERT_EQ(logged.size(), 8u);
  for (const nlohmann::json& line : logged) {
    const nlohmann::json& body = line["body"];
    ASSERT_TRUE(body["prompt"].is_array()) << body;
    EXPECT_GE(body["prompt"].size(), 4u) << body;
    EXPECT_LE(body["prompt"].size(), 12u) << body;
    for (const nlohmann::json& id : body["prompt"]) {
      EXPECT_GE(id.get<int>(), 3);
      EXPECT_LT(id.get<int>(), 512);
    }
    EXPECT_EQ(body["model"], "fake-model");
    EXPECT_EQ(body["max_tokens"], 5);
    EXPECT_EQ(body["ignore_eos"], true);
    EXPECT_EQ(body["min_tokens"], 5);
    EXPECT_EQ(body["temperature"], 0);
    EXPECT_EQ(body["stream"], true);
    EXPECT_EQ(body["stream_options"]["include_usage"], true);
    EXPECT_LE(line["max_in_flight"].get<int>(), 2) << "--max-concurrency 2";
  }
}

TEST_F(FloverBenchOpenAiTest, AnErrorEventFailsTheRequestsWithTheServersMessage) {
  StartServer("error");
  CliRun r = Flover("bench --api openai --endpoint " + Endpoint() + " --requests 2 --output-len 3");
  EXPECT_EQ(r.exit_code, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("boom: the fake failed"), std::string::npos) << r.out;
}

TEST_F(FloverBenchOpenAiTest, AStreamCutShortWithoutAFinishReasonFails) {
  StartServer("cut");
  CliRun r = Flover("bench --api openai --endpoint " + Endpoint() + " --requests 2 --output-len 3");
  EXPECT_EQ(r.exit_code, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("without a finish reason after 1 token(s)"), std::string::npos) << r.out;
}

TEST_F(FloverBenchOpenAiTest, BadTargetsAreClearErrors) {
  // Each: flags, and what the error on stderr says (exit status 2).
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--api openai", "--endpoint http://HOST:PORT"},
      {"--api openai --endpoint tcp://127.0.0.1:5555", "http://HOST:PORT"},
      {"--endpoint http://127.0.0.1:8000", "--api openai"},
      {"--api openai --config " + Config(), "--endpoint http://HOST:PORT, not --config"},
      {"--endpoint tcp://127.0.0.1:1 --max-concurrency -1", "--max-concurrency"},
      {"--endpoint tcp://127.0.0.1:1 --slo-ttft-ms 0", "--slo-ttft-ms"},
  };
  for (const auto& [flags, error] : cases) {
    CliRun r = Flover("bench " + flags);
    EXPECT_EQ(r.exit_code, 2) << flags << ": " << r.err;
    EXPECT_NE(r.err.find(error), std::string::npos) << flags << ": " << r.err;
  }
  // Nothing listens there: the run fails (exit 1) naming the URL, within --ready-timeout.
  CliRun closed = Flover("bench --api openai --endpoint http://127.0.0.1:1 --ready-timeout 1");
  EXPECT_EQ(closed.exit_code, 1);
  EXPECT_NE(closed.out.find("http://127.0.0.1:1/v1/models"), std::string::npos) << closed.out;
}

}  // namespace

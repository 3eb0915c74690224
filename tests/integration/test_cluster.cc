#include "tests/integration/test_cluster.h"

#include <omp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/test_paths.h"
#include "worker/backend.h"
#include "worker/engine/engine.h"

namespace flover::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string CoordinatorBinary() { return FLOVER_COORDINATOR_BIN; }
std::string WorkerBinary() { return FLOVER_WORKER_BIN; }
std::string FloverBinary() { return FLOVER_BIN; }

std::string ClusterYaml(const TestClusterOptions& o) {
  std::ostringstream yaml;
  yaml << "cluster:\n  name: test\n"
       << "endpoints:\n  client: tcp://127.0.0.1:*\n  control: tcp://127.0.0.1:*\n"
       << "  plans: tcp://127.0.0.1:*\n" << (o.http ? "  http: http://127.0.0.1:0\n" : "")
       << "model:\n  path: " << o.model << "\n  dtype: " << o.dtype << "\n";
  if (!o.tokenizer.empty()) yaml << "  tokenizer: " << o.tokenizer << "\n";
  yaml << "parallel:\n  replicas: " << o.replicas << "\n  tensor: " << o.tensor_parallel
       << "\n  cpu_transport: " << o.cpu_transport << "\n"
       << "workers:\n";
  for (int r = 0; r < o.replicas; ++r)
    for (int k = 0; k < o.tensor_parallel; ++k) yaml << "  - {replica: " << r << ", rank: " << k << ", threads: 1}\n";
  yaml << "kv_cache:\n  block_size: " << o.block_size << "\n  memory_mib: " << o.kv_memory_mib << "\n";
  if (!o.kv_dtype.empty()) yaml << "  dtype: " << o.kv_dtype << "\n";
  yaml << "scheduler:\n  policy: " << o.policy << "\n  max_step_tokens: " << o.max_step_tokens
       << "\n  max_running: " << o.max_running << "\n  pipeline_depth: " << o.pipeline_depth
       << "\n  batch_window_ms: " << o.batch_window_ms << "\n  max_batch: " << o.max_batch
       << "\n  failover_wait_ms: " << o.failover_wait_ms << "\n"
       << "heartbeat:\n  interval_ms: " << o.heartbeat_interval_ms << "\n  timeout_ms: " << o.heartbeat_timeout_ms
       << "\n  step_timeout_ms: " << o.step_timeout_ms << "\n"
       << "limits:\n  status_per_client_per_second: " << o.status_per_second << "\n";
  for (const auto& [key, value] : o.limits) yaml << "  " << key << ": " << value << "\n";
  if (!o.http_settings.empty()) yaml << "http:\n";
  for (const auto& [key, value] : o.http_settings) yaml << "  " << key << ": " << value << "\n";
  if (!o.keys_dir.empty()) {
    const std::string& k = o.keys_dir;
    yaml << "security:\n  mode: curve\n  coordinator_key: " << k << "/coordinator.key\n"
         << "  coordinator_public_key: " << k << "/coordinator.pub\n  worker_key: " << k << "/workers/worker.key\n"
         << "  client_key: " << k << "/admins/up.key\n  worker_keys: " << k << "/workers\n"
         << "  client_keys: " << k << "/clients\n  admin_keys: " << k << "/admins\n";
  }
  return yaml.str();
}

Status MakeKeys(const std::string& dir, const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    FLOVER_ASSIGN_OR_RETURN(CurveKeyPair pair, GenerateCurveKeyPair());
    FLOVER_RETURN_IF_ERROR(WriteCurveKeyFiles(dir + "/" + name, pair));
  }
  return Status::Ok();
}

Status MakeClusterKeys(const std::string& dir) {
  return MakeKeys(dir, {"coordinator", "workers/worker", "admins/up", "clients/alice", "other/eve"});
}

CurveClientKeys ClusterKeys(const std::string& dir, const std::string& name) {
  Result<CurveClientKeys> keys = LoadCurveClientKeys(dir + "/" + name + ".key", dir + "/coordinator.pub");
  FLOVER_CHECK(keys.ok()) << keys.status().ToString();
  return std::move(keys).value();
}

Result<std::unique_ptr<TestCluster>> TestCluster::Start(const TestClusterOptions& o,
                                                        std::chrono::seconds ready_timeout) {
  std::unique_ptr<TestCluster> c(new TestCluster());
  char tmpl[] = "/tmp/flover-test-XXXXXX";
  if (!mkdtemp(tmpl)) return IoError("mkdtemp failed");
  c->dir_ = tmpl;
  const std::string config_path = c->dir_ + "/cluster.yaml";
  std::ofstream(config_path) << ClusterYaml(o);
  LocalClusterOptions options;
  options.coordinator_bin = CoordinatorBinary();
  options.worker_bin = WorkerBinary();
  options.ready_timeout_s = static_cast<double>(ready_timeout.count());
  options.capture_logs = o.capture_logs;
  FLOVER_ASSIGN_OR_RETURN(c->cluster_, LocalCluster::Start(config_path, options));
  return c;
}

Result<proto::ReloadReply> TestCluster::Reload(const TestClusterOptions& options) {
  std::ofstream(dir_ + "/cluster.yaml") << ClusterYaml(options);
  return cluster_->Reload();
}

void SecuredClusterFixture::SetUp() {
  char tmpl[] = "/tmp/flover-secured-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  dir_ = tmpl;
  keys_ = dir_ + "/keys";
  const Status made = MakeClusterKeys(keys_);
  ASSERT_TRUE(made.ok()) << made.ToString();
}

void SecuredClusterFixture::TearDown() { std::filesystem::remove_all(dir_); }

TestClusterOptions SecuredClusterFixture::Options() const {
  TestClusterOptions o;
  o.model = Stories260kBin();
  o.tokenizer = Tok512Bin();
  o.tensor_parallel = 2;
  o.keys_dir = keys_;
  return o;
}

SessionRequest TextRequest(const std::string& id, const std::string& text, const StopParams& stop, bool stream) {
  SessionRequest q;
  q.id = id;
  q.text = text;
  q.stop = stop;
  q.stream = stream;
  return q;
}

SessionRequest TokenRequest(const std::string& id, const std::vector<int>& prompt, const StopParams& stop,
                            bool stream) {
  SessionRequest q = TextRequest(id, "", stop, stream);
  q.token_ids = prompt;
  return q;
}

ShellRun RunShell(const std::string& command) {
  ShellRun run;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return run;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) run.output.append(buf, n);
  const int status = pclose(p);
  if (WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
  return run;
}

bool ProcessAlive(int pid) {
  if (kill(pid, 0) != 0) return false;
  // A zombie is not alive (its parent has not reaped it yet).
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t close = content.rfind(')');
  return close != std::string::npos && content.size() > close + 2 && content[close + 2] != 'Z';
}

std::vector<EngineResult> EngineGreedy(const std::vector<RequestParams>& requests) {
  // One thread: stories260K is tiny, and OpenMP threads spinning at barriers next to
  // another test process on the same cores slow both down by orders of magnitude.
  struct ScopedOmpThreads {
    const int saved = omp_get_max_threads();
    ScopedOmpThreads() { omp_set_num_threads(1); }
    ~ScopedOmpThreads() { omp_set_num_threads(saved); }
  } one_thread;
  BackendConfig backend;
  backend.model = Stories260kBin();
  backend.kv_max_sequences = EngineConfig{}.max_running;
  Result<CreatedBackend> created = CreateBackend(backend);
  FLOVER_CHECK(created.ok()) << created.status().ToString();
  Result<std::unique_ptr<Engine>> engine = Engine::Create(std::move(created->backend), {});
  FLOVER_CHECK(engine.ok()) << engine.status().ToString();
  std::vector<EngineResult> out;
  std::vector<EngineEvent> events;
  for (const RequestParams& r : requests) {
    Result<uint64_t> id = (*engine)->Add(r);
    FLOVER_CHECK(id.ok()) << id.status().ToString();
    EngineResult result;
    while ((*engine)->has_work()) {
      events.clear();
      const Status s = (*engine)->Step(&events);
      FLOVER_CHECK(s.ok()) << s.ToString();
      for (const EngineEvent& e : events) {
        if (e.token >= 0) result.tokens.push_back(e.token);
        if (e.token >= 0 && e.logprobs) result.logprobs.push_back(*e.logprobs);
        if (e.finish != FinishReason::kNone) result.finish = e.finish;
      }
    }
    out.push_back(std::move(result));
  }
  return out;
}

std::vector<std::vector<int>> EngineGreedy(const std::vector<std::vector<int>>& prompts, int max_tokens) {
  std::vector<RequestParams> requests(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    requests[i].prompt = prompts[i];
    requests[i].stop.max_tokens = max_tokens;
  }
  std::vector<std::vector<int>> out;
  for (EngineResult& r : EngineGreedy(requests)) out.push_back(std::move(r.tokens));
  return out;
}

TestCluster::~TestCluster() {
  cluster_.reset();  // stops every process
  std::error_code ec;
  if (!dir_.empty()) fs::remove_all(dir_, ec);
}

}  // namespace flover::testing

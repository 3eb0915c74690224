// Runs the real `flover generate` (and the daemons' flag handling): text that is not
// UTF-8, an endpoint where nothing listens, unknown flags, --version, bad --chat flags,
// and the NDJSON of --stream --json and --chat's prompts against a real cluster
// (tests/integration/test_cluster.h).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "tests/integration/test_cluster.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

using testing::RunShell;
using testing::ShellRun;

// A loopback TCP port bound (so nothing else takes it) where nothing listens: a connect
// is refused, again and again.
class ClosedPort {
 public:
  ClosedPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      ADD_FAILURE() << "cannot bind a loopback port";
    port_ = ntohs(addr.sin_port);
  }
  ~ClosedPort() { close(fd_); }
  std::string endpoint() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

std::string Generate(const std::string& args) { return testing::FloverBinary() + " generate " + args; }

TEST(FloverGenerateTest, TextThatIsNotUtf8FailsAtOnceNamingTheFlag) {
  // Nothing listens at the endpoint: exit 2 (not the connect failure's 1) shows that
  // nothing was sent.
  const ClosedPort port;
  const ShellRun prompt = RunShell(Generate("--endpoint " + port.endpoint() + " --prompt 'caf\xff'"));
  EXPECT_EQ(prompt.exit_code, 2) << prompt.output;
  EXPECT_NE(prompt.output.find("--prompt"), std::string::npos) << prompt.output;
  EXPECT_NE(prompt.output.find("not valid UTF-8"), std::string::npos) << prompt.output;
  EXPECT_NE(prompt.output.find("--prompt-ids"), std::string::npos) << prompt.output;

  const ShellRun stop = RunShell(Generate("--endpoint " + port.endpoint() + " --prompt ok --stop 'x\xc3'"));
  EXPECT_EQ(stop.exit_code, 2) << stop.output;
  EXPECT_NE(stop.output.find("--stop"), std::string::npos) << stop.output;
  EXPECT_NE(stop.output.find("not valid UTF-8"), std::string::npos) << stop.output;
}

TEST(FloverGenerateTest, BadChatFlagsFailBeforeAnythingIsSent) {
  const ClosedPort port;
  const std::string endpoint = "--endpoint " + port.endpoint() + " ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--chat --prompt-ids 1,2", "--chat renders --prompt texts; it cannot take --prompt-ids"},
      {"--system S --prompt hi", "--system needs --chat"},
      {"--chat-template chatml --prompt hi", "--chat-template needs --chat"},
      {"--chat --chat-template vicuna --prompt hi", "--chat-template 'vicuna' is neither a built-in chat template"},
  };
  for (const auto& [args, message] : cases) {
    const ShellRun run = RunShell(Generate(endpoint + args));
    EXPECT_EQ(run.exit_code, 2) << args << ": " << run.output;
    EXPECT_NE(run.output.find(message), std::string::npos) << args << ": " << run.output;
  }
}

TEST(FloverGenerateTest, NothingListeningFailsNamingTheEndpoint) {
  const ClosedPort port;
  const ShellRun run = RunShell(Generate("--endpoint " + port.endpoint() + " --connect-timeout 1 --prompt hi"));
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("nothing answered at " + port.endpoint()), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("--connect-timeout"), std::string::npos) << run.output;
  EXPECT_EQ(run.output.find("no reply from"), std::string::npos) << run.output;  // not the silence timeout
}

TEST(FloverGenerateTest, StatusWithNothingListeningSaysSo) {
  const ClosedPort port;
  const ShellRun run = RunShell(testing::FloverBinary() + " status --endpoint " + port.endpoint() + " --timeout 1");
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("nothing answered at " + port.endpoint()), std::string::npos) << run.output;
  const ShellRun probe =
      RunShell(testing::FloverBinary() + " status --probe --endpoint " + port.endpoint() + " --timeout 1");
  EXPECT_EQ(probe.exit_code, 1) << probe.output;
  EXPECT_NE(probe.output.find("not ready: Unavailable: nothing answered"), std::string::npos) << probe.output;
}

TEST(FloverGenerateTest, UnknownFlagsExit2Everywhere) {
  for (const char* command : {"run", "up", "generate", "status", "bench", "keygen"}) {
    const ShellRun run = RunShell(testing::FloverBinary() + " " + command + " --no-such-flag 1");
    EXPECT_EQ(run.exit_code, 2) << "flover " << command << ": " << run.output;
  }
  EXPECT_EQ(RunShell(testing::FloverBinary()).exit_code, 2);  // no subcommand
  for (const std::string& daemon : {testing::CoordinatorBinary(), testing::WorkerBinary()}) {
    const ShellRun run = RunShell(daemon + " --no-such-flag 1");
    EXPECT_EQ(run.exit_code, 2) << daemon << ": " << run.output;
  }
}

TEST(FloverGenerateTest, VersionOnEveryBinary) {
  const std::string protocol = " (protocol " + std::to_string(kProtocolVersion) + ")\n";
  const std::vector<std::pair<std::string, std::string>> binaries = {
      {testing::FloverBinary(), "flover"},
      {testing::CoordinatorBinary(), "flover-coordinator"},
      {testing::WorkerBinary(), "flover-worker"}};
  for (const auto& [path, name] : binaries) {
    const ShellRun run = RunShell(path + " --version");
    EXPECT_EQ(run.exit_code, 0) << run.output;
    EXPECT_EQ(run.output, name + " " FLOVER_PROJECT_VERSION + protocol);
  }
}

std::vector<nlohmann::json> JsonLines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(FloverGenerateTest, StreamJsonIsOneObjectPerEvent) {
  testing::TestClusterOptions options;
  options.model = testing::Stories260kBin();
  options.tokenizer = testing::Tok512Bin();
  options.tensor_parallel = 1;
  Result<std::unique_ptr<testing::TestCluster>> cluster = testing::TestCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  const std::string args =
      "--endpoint " + (*cluster)->client_endpoint() + " --prompt Sara --prompt 'Ben had' --max-tokens 24 --json";

  // Without --stream: one object per prompt, in prompt order.
  const ShellRun whole = RunShell("(" + Generate(args) + " 2>/dev/null)");
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  const std::vector<nlohmann::json> completions = JsonLines(whole.output);
  ASSERT_EQ(completions.size(), 2u) << whole.output;
  EXPECT_FALSE(completions[0].contains("event"));

  const ShellRun streamed = RunShell("(" + Generate(args + " --stream") + " 2>/dev/null)");
  ASSERT_EQ(streamed.exit_code, 0) << streamed.output;
  std::map<int, std::string> texts;
  std::map<int, std::vector<int>> tokens;
  std::map<int, nlohmann::json> done;
  for (const nlohmann::json& line : JsonLines(streamed.output)) {
    const int index = line.at("index").get<int>();
    ASSERT_FALSE(done.count(index)) << "an event after the done of prompt " << index << ": " << line;
    if (line.at("event") == "token") {
      texts[index] += line.at("text").get<std::string>();
      for (int t : line.at("tokens")) tokens[index].push_back(t);
    } else {
      ASSERT_EQ(line.at("event"), "done") << line;
      done[index] = line;
    }
  }
  ASSERT_EQ(done.size(), 2u) << streamed.output;
  for (int i = 0; i < 2; ++i) {
    const nlohmann::json& d = done[i];
    EXPECT_EQ(d.at("finish_reason"), "length") << d;
    EXPECT_EQ(d.at("completion_tokens"), 24) << d;
    EXPECT_EQ(d.at("prompt_tokens"), completions[i].at("prompt_tokens")) << d;
    EXPECT_EQ(d.at("text").get<std::string>(), texts[i]);
    EXPECT_EQ(d.at("tokens").get<std::vector<int>>(), tokens[i]);
    // Greedy: the same completion as without --stream.
    EXPECT_EQ(d.at("tokens"), completions[i].at("tokens"));
    EXPECT_EQ(d.at("text"), completions[i].at("text"));
  }
}

TEST(FloverGenerateTest, ChatRendersEachPromptWithTheTemplate) {
  testing::TestClusterOptions options;
  options.model = testing::Stories260kBin();  // a llama2.c file: no chat template of its own
  options.tokenizer = testing::Tok512Bin();
  options.tensor_parallel = 1;
  Result<std::unique_ptr<testing::TestCluster>> cluster = testing::TestCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  const std::string endpoint = "--endpoint " + (*cluster)->client_endpoint() + " ";

  const ShellRun none = RunShell(Generate(endpoint + "--chat --prompt Hi --max-tokens 4"));
  EXPECT_EQ(none.exit_code, 1) << none.output;
  EXPECT_NE(none.output.find("has no chat template"), std::string::npos) << none.output;

  const ShellRun run = RunShell("(" + Generate(endpoint + "--chat --chat-template chatml --system 'Be brief.' "
                                                          "--prompt Hi --prompt Bye --max-tokens 4 --json") +
                                " 2>/dev/null)");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const std::vector<nlohmann::json> completions = JsonLines(run.output);
  ASSERT_EQ(completions.size(), 2u) << run.output;
  EXPECT_EQ(completions[0].at("prompt"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(completions[1].at("prompt"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_GT(completions[0].at("prompt_tokens").get<int>(), 20);
}

}  // namespace
}  // namespace flover

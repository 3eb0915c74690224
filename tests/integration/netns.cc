#include "tests/integration/netns.h"

#include <signal.h>
#include <unistd.h>

#include <sstream>

#include "common/check.h"
#include "tests/integration/test_cluster.h"

namespace flover::testing {
namespace {

constexpr const char* kPrefix = "flnt";
constexpr const char* kSwitch = "sw";
constexpr const char* kBridge = "br0";
constexpr const char* kHostLink = "eth0";

// Deletes the namespaces "flnt<pid>-*" of test processes that no longer exist.
void DeleteStaleNamespaces() {
  const ShellRun list = RunShell("ip netns list");
  std::istringstream lines(list.output);
  for (std::string line; std::getline(lines, line);) {
    const std::string name = line.substr(0, line.find(' '));
    if (name.rfind(kPrefix, 0) != 0) continue;
    const size_t dash = name.find('-');
    if (dash == std::string::npos) continue;
    const std::string pid_text = name.substr(4, dash - 4);
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
    RunShell(ShellQuote({"ip", "netns", "delete", name}));
  }
}

// The ip program's path, for exec without a PATH search ("ip" when none is found).
std::string IpBinary() {
  for (const char* path : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
    if (access(path, X_OK) == 0) return path;
  return "ip";
}

}  // namespace

std::string ShellQuote(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& a : argv) {
    if (!out.empty()) out += ' ';
    out.push_back('\'');
    for (char c : a) {
      if (c == '\'') out.append("'\\''");
      else out.push_back(c);
    }
    out.push_back('\'');
  }
  return out;
}

Status NetnsLab::Run(const std::vector<std::string>& argv) {
  const ShellRun run = RunShell(ShellQuote(argv));
  if (run.exit_code == 0) return Status::Ok();
  return Unavailable("`" + ShellQuote(argv) + "` failed (exit " + std::to_string(run.exit_code) + "): " + run.output);
}

Result<std::unique_ptr<NetnsLab>> NetnsLab::Create(const std::vector<std::string>& hosts, int subnet) {
  if (hosts.empty() || hosts.size() > 200) return InvalidArgument("NetnsLab: 1 to 200 hosts");
  if (subnet < 0 || subnet > 255) return InvalidArgument("NetnsLab: subnet must be 0..255");
  DeleteStaleNamespaces();
  std::unique_ptr<NetnsLab> lab(new NetnsLab());
  lab->prefix_ = std::string(kPrefix) + std::to_string(getpid()) + "-";
  lab->subnet_ = subnet;
  lab->hosts_ = hosts;
  const std::string sw = lab->prefix_ + kSwitch;
  if (const Status added = lab->Run({"ip", "netns", "add", sw}); !added.ok())
    return FailedPrecondition("this machine cannot make network namespaces: " + added.message());
  lab->made_.push_back(sw);
  FLOVER_RETURN_IF_ERROR(lab->Run({"ip", "-n", sw, "link", "set", "lo", "up"}));
  FLOVER_RETURN_IF_ERROR(lab->Run({"ip", "-n", sw, "link", "add", kBridge, "type", "bridge"}));
  FLOVER_RETURN_IF_ERROR(lab->Run({"ip", "-n", sw, "link", "set", kBridge, "up"}));
  for (const std::string& host : hosts) {
    const std::string ns = lab->Namespace(host);
    FLOVER_RETURN_IF_ERROR(lab->Run({"ip", "netns", "add", ns}));
    lab->made_.push_back(ns);
    FLOVER_RETURN_IF_ERROR(lab->Run({"ip", "-n", ns, "link", "set", "lo", "up"}));
    // Made in the switch; its peer moves into the host at once.
    FLOVER_RETURN_IF_ERROR(
        lab->Run({"ip", "-n", sw, "link", "add", host, "type", "veth", "peer", "name", kHostLink, "netns", ns}));
    FLOVER_RETURN_IF_ERROR(lab->Run({"ip", "-n", sw, "link", "set", host, "master", kBridge, "up"}));
    FLOVER_RETURN_IF_ERROR(lab->Run({"ip", "-n", ns, "addr", "add", lab->Address(host) + "/24", "dev", kHostLink}));
    FLOVER_RETURN_IF_ERROR(lab->Run({"ip", "-n", ns, "link", "set", kHostLink, "up"}));
  }
  return lab;
}

NetnsLab::~NetnsLab() {
  for (auto it = made_.rbegin(); it != made_.rend(); ++it) {
    const Status deleted = Run({"ip", "netns", "delete", *it});
    if (!deleted.ok()) std::fprintf(stderr, "NetnsLab: %s\n", deleted.ToString().c_str());
  }
}

int NetnsLab::Index(const std::string& host) const {
  for (size_t i = 0; i < hosts_.size(); ++i)
    if (hosts_[i] == host) return static_cast<int>(i);
  FLOVER_CHECK(false) << "NetnsLab: no host '" << host << "'";
  return -1;
}

std::string NetnsLab::Namespace(const std::string& host) const {
  Index(host);
  return prefix_ + host;
}

std::string NetnsLab::Address(const std::string& host) const {
  return "10.77." + std::to_string(subnet_) + "." + std::to_string(Index(host) + 1);
}

std::vector<std::string> NetnsLab::InHost(const std::string& host, const std::vector<std::string>& argv) const {
  std::vector<std::string> out = {IpBinary(), "netns", "exec", Namespace(host)};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::string NetnsLab::ShellInHost(const std::string& host, const std::string& command) const {
  return ShellQuote(InHost(host, {"/bin/sh", "-c", command}));
}

Status NetnsLab::SetLinkUp(const std::string& host, bool up) {
  return Run({"ip", "-n", Namespace(host), "link", "set", kHostLink, up ? "up" : "down"});
}

Status NetnsLab::DropPackets(const std::string& host, double probability) {
  for (const char* chain : {"INPUT", "OUTPUT"}) {
    std::vector<std::string> rule = {"iptables", "-A", chain, std::string(chain) == "INPUT" ? "-i" : "-o", kHostLink};
    if (probability < 1)
      rule.insert(rule.end(), {"-m", "statistic", "--mode", "random", "--probability", std::to_string(probability)});
    rule.insert(rule.end(), {"-j", "DROP"});
    FLOVER_RETURN_IF_ERROR(Run(InHost(host, rule)));
  }
  return Status::Ok();
}

Status NetnsLab::ClearDrops(const std::string& host) {
  for (const char* chain : {"INPUT", "OUTPUT"}) FLOVER_RETURN_IF_ERROR(Run(InHost(host, {"iptables", "-F", chain})));
  return Status::Ok();
}

Result<uint64_t> NetnsLab::DroppedPackets(const std::string& host) {
  const ShellRun run = RunShell(ShellQuote(InHost(host, {"iptables", "-L", "-v", "-n", "-x"})));
  if (run.exit_code != 0) return Unavailable("iptables -L in " + Namespace(host) + " failed: " + run.output);
  uint64_t total = 0;
  std::istringstream lines(run.output);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    uint64_t packets = 0;
    std::string bytes, target;
    if (words >> packets >> bytes >> target && target == "DROP") total += packets;
  }
  return total;
}

Status NetnsLab::Delay(const std::string& host, int delay_ms) {
  return Run(InHost(host, {"tc", "qdisc", "replace", "dev", kHostLink, "root", "netem", "delay",
                           std::to_string(delay_ms) + "ms"}));
}

Status NetnsLab::ProbeNetem() {
  const std::vector<std::string> tc = {IpBinary(), "netns", "exec", prefix_ + kSwitch, "tc", "qdisc"};
  std::vector<std::string> add = tc;
  add.insert(add.end(), {"add", "dev", "lo", "root", "netem", "delay", "1ms"});
  FLOVER_RETURN_IF_ERROR(Run(add));
  std::vector<std::string> del = tc;
  del.insert(del.end(), {"del", "dev", "lo", "root"});
  return Run(del);
}

}  // namespace flover::testing

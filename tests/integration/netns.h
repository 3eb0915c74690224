// NetnsLab: a private network of Linux network namespaces on one machine, for tests of
// a cluster spread over hosts. A switch namespace holds a bridge; each host is a
// namespace of its own, joined to the bridge by a veth pair ("eth0" in the host, the
// host's name in the switch), with address 10.77.<subnet>.<i+1>/24 (host i) and
// loopback up. Namespaces are named "flnt<pid>-<host>" ("flnt<pid>-sw" for the switch).
//
// Invariants: every command runs with `ip -n NS` or `ip netns exec NS`, so the root
// namespace's interfaces, routes and firewall are never touched and no packet leaves
// the namespaces. The destructor deletes every namespace it made (and with them their
// links and firewall rules), also when Create fails half-way; Create first deletes the
// namespaces of earlier runs whose process is gone.
//
// Known limit: tc's netem qdisc (delay, reordering) needs the kernel's sch_netem,
// which some machines lack ("Specified qdisc kind is unknown"); ProbeNetem() says whether
// this one has it. Packet loss uses iptables' statistic match instead, which needs no
// module beyond netfilter.
//
// Requires root (CAP_NET_ADMIN and CAP_SYS_ADMIN). Thread-safety: none.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace flover::testing {

class NetnsLab {
 public:
  // `hosts`: short names ("c", "h1", "h2"), at most 200; `subnet`: X of 10.77.X.0/24.
  // FailedPrecondition when `ip netns add` fails (no privilege, no support: a reason to
  // skip); Unavailable naming the command and its output when a later step fails.
  static Result<std::unique_ptr<NetnsLab>> Create(const std::vector<std::string>& hosts, int subnet);
  ~NetnsLab();
  NetnsLab(const NetnsLab&) = delete;
  NetnsLab& operator=(const NetnsLab&) = delete;

  // REQUIRES: `host` was given to Create.
  std::string Namespace(const std::string& host) const;
  std::string Address(const std::string& host) const;

  // `argv` run in `host`'s namespace: {"ip", "netns", "exec", NS, argv...}.
  std::vector<std::string> InHost(const std::string& host, const std::vector<std::string>& argv) const;
  // A /bin/sh command line that runs `command` (itself a sh command) in `host`'s namespace.
  std::string ShellInHost(const std::string& host, const std::string& command) const;

  // Brings the host's eth0 down (a partition: the host reaches nobody, nobody reaches
  // it) or up again.
  Status SetLinkUp(const std::string& host, bool up);
  // Drops each packet into and out of the host's eth0 with this probability (iptables
  // statistic match; every packet at probability >= 1: the host is cut off, while its
  // own processes still reach each other over loopback and its own address).
  // ClearDrops removes the rules; DroppedPackets counts what the rules dropped.
  Status DropPackets(const std::string& host, double probability);
  Status ClearDrops(const std::string& host);
  Result<uint64_t> DroppedPackets(const std::string& host);

  // Ok when tc can add a netem qdisc (tried on the loopback of the
  // switch namespace, then removed);
  // else tc's error ("Specified qdisc kind is unknown" without the kernel's sch_netem).
  Status ProbeNetem();
  // Delays every packet out of the host's eth0 by `delay_ms` (tc netem).
  // REQUIRES: ProbeNetem() is Ok.
  Status Delay(const std::string& host, int delay_ms);

 private:
  NetnsLab() = default;
  Status Run(const std::vector<std::string>& argv);
  int Index(const std::string& host) const;

  std::string prefix_;  // "flnt<pid>-"
  int subnet_ = 0;
  std::vector<std::string> hosts_;
  std::vector<std::string> made_;  // namespaces created, deleted by the destructor
};

// `argv` joined into one /bin/sh command line, each word single-quoted.
std::string ShellQuote(const std::vector<std::string>& argv);

}  // namespace flover::testing

#include "common/local_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace flover {
namespace {

constexpr std::string_view kTcp = "tcp://";

// The numeric address of `addr` (IPv4 or IPv6, without brackets or port); "" otherwise.
std::string NumericHost(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&addr);
    if (inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text))) return text;
  } else if (addr.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    if (inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text))) return text;
  }
  return "";
}

// The source address the kernel picks toward `target`; "" with *error set when none.
std::string SourceAddressToward(const addrinfo& target, std::string* error) {
  const int fd = socket(target.ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return "";
  }
  std::string address;
  sockaddr_storage local = {};
  socklen_t length = sizeof(local);
  if (connect(fd, target.ai_addr, target.ai_addrlen) != 0) {
    *error = std::string("no route: ") + std::strerror(errno);
  } else if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0) {
    *error = std::string("getsockname: ") + std::strerror(errno);
  } else {
    address = NumericHost(local);
    if (address.empty()) *error = "not an IP address";
  }
  close(fd);
  return address;
}

}  // namespace

std::optional<TcpEndpoint> ParseTcpEndpoint(const std::string& endpoint) {
  if (endpoint.rfind(kTcp, 0) != 0) return std::nullopt;
  const std::string rest = endpoint.substr(kTcp.size());
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) return std::nullopt;
  TcpEndpoint out{.host = rest.substr(0, colon), .port = rest.substr(colon + 1)};
  if (out.host.front() == '[' || out.host.back() == ']') {
    if (out.host.size() < 3 || out.host.front() != '[' || out.host.back() != ']') return std::nullopt;
    out.host = out.host.substr(1, out.host.size() - 2);
  } else if (out.host.find(':') != std::string::npos) {
    return std::nullopt;  // an IPv6 literal needs its brackets
  }
  return out;
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4 = {};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6 = {};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

std::optional<std::string> ConfiguredWorkerHost(const std::string& flag, const std::string& file_host) {
  if (!flag.empty()) return flag;
  if (!file_host.empty() && !IsLoopbackHost(file_host)) return file_host;
  return std::nullopt;
}

Result<std::string> LocalAddressToward(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return std::string("127.0.0.1");
  const std::optional<TcpEndpoint> tcp = ParseTcpEndpoint(endpoint);
  if (!tcp) return InvalidArgument("'" + endpoint + "' is not tcp://host:port, ipc://path or inproc://name");
  if (tcp->host == "*" || tcp->host == "0.0.0.0" || tcp->host == "::")
    return InvalidArgument("'" + endpoint + "' names every interface, not a host to connect to");
  // Any port will do for a route; a connect() to port 0 may be refused.
  const bool numeric_port =
      !tcp->port.empty() && tcp->port.size() <= 5 && tcp->port.find_first_not_of("0123456789") == std::string::npos;
  const std::string port = numeric_port && std::stoi(tcp->port) > 0 ? tcp->port : "9";
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* resolved = nullptr;
  if (const int rc = getaddrinfo(tcp->host.c_str(), port.c_str(), &hints, &resolved); rc != 0)
    return Unavailable("cannot resolve the host of " + endpoint + ": " + gai_strerror(rc));
  std::string error;
  std::string address;
  for (const addrinfo* a = resolved; a != nullptr && address.empty(); a = a->ai_next)
    address = SourceAddressToward(*a, &error);
  freeaddrinfo(resolved);
  if (address.empty()) return Unavailable("no local address leads to " + endpoint + ": " + error);
  return address;
}

}  // namespace flover

// A minimal HTTP/1.1 client over a blocking POSIX socket, for the HTTP server's tests:
// send raw bytes (well-formed or not), read one response (Content-Length, chunked, or
// until close), see whether the server closed the connection. Every read waits at most
// kHttpWait: only a failing test waits that long.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace flover::http_testing {

inline constexpr std::chrono::milliseconds kHttpWait{30000};

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-case
  std::string body;                            // de-chunked
  std::vector<std::string> chunks;             // the chunks, in order (chunked replies)
};

class HttpTestClient {
 public:
  // `endpoint`: http://127.0.0.1:PORT.
  explicit HttpTestClient(const std::string& endpoint) {
    const size_t colon = endpoint.rfind(':');
    const int port = std::atoi(endpoint.c_str() + colon + 1);
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~HttpTestClient() { Close(); }
  HttpTestClient(const HttpTestClient&) = delete;
  HttpTestClient& operator=(const HttpTestClient&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

  bool Send(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  static std::string Request(const std::string& method, const std::string& path, const std::string& body = {},
                             const std::string& extra_headers = {}) {
    std::string r = method + " " + path + " HTTP/1.1\r\nHost: test\r\n" + extra_headers;
    if (!body.empty() || method == "POST") r += "Content-Type: application/json\r\nContent-Length: " +
                                               std::to_string(body.size()) + "\r\n";
    return r + "\r\n" + body;
  }

  // One response; nullopt when the connection closed (or nothing came within kHttpWait)
  // before a whole response.
  std::optional<HttpReply> Read() {
    HttpReply reply;
    std::string head;
    for (;;) {
      const size_t end = pending_.find("\r\n\r\n");
      if (end != std::string::npos) {
        head = pending_.substr(0, end + 2);
        pending_.erase(0, end + 4);
        break;
      }
      if (!Fill()) return std::nullopt;
    }
    size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12) return std::nullopt;
    reply.status = std::atoi(status_line.c_str() + 9);
    for (size_t pos = line_end + 2; pos < head.size(); pos = line_end + 2) {
      line_end = head.find("\r\n", pos);
      const std::string line = head.substr(pos, line_end - pos);
      const size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      reply.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    }
    if (reply.status >= 100 && reply.status < 200) return reply;  // interim: no body
    if (auto it = reply.headers.find("content-length"); it != reply.headers.end()) {
      const size_t length = std::stoul(it->second);
      while (pending_.size() < length)
        if (!Fill()) return std::nullopt;
      reply.body = pending_.substr(0, length);
      pending_.erase(0, length);
      return reply;
    }
    if (reply.headers["transfer-encoding"] == "chunked") {
      for (;;) {
        size_t eol;
        while ((eol = pending_.find("\r\n")) == std::string::npos)
          if (!Fill()) return std::nullopt;
        const size_t size = std::stoul(pending_.substr(0, eol), nullptr, 16);
        while (pending_.size() < eol + 2 + size + 2)
          if (!Fill()) return std::nullopt;
        if (size == 0) {
          pending_.erase(0, eol + 4);
          return reply;
        }
        reply.chunks.push_back(pending_.substr(eol + 2, size));
        reply.body += reply.chunks.back();
        pending_.erase(0, eol + 2 + size + 2);
      }
    }
    while (Fill()) {
    }
    reply.body = std::move(pending_);
    pending_.clear();
    return reply;
  }

  // True once the server closed the connection (EOF or reset) within `wait`; bytes that
  // come first are skipped.
  bool WaitClosed(std::chrono::milliseconds wait = kHttpWait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buffer[4096];
      const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) return true;
    }
    return false;
  }

 private:
  bool Fill() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(kHttpWait.count())) <= 0) return false;
    char buffer[16384];
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    if (n <= 0) return false;
    pending_.append(buffer, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string pending_;
};

}  // namespace flover::http_testing

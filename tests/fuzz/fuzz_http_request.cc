// Fuzzes the HTTP server's request handling up to the exchange: the bytes of a
// connection go through Beast's request parser with the server's limits (head at most
// kMaxHeaderBytes, body at most 64 KiB here), as far as they parse; each whole request
// is routed (Resolve, with one API key configured), and its error, if any, is written as
// the server writes it (ErrorResponse). Checked: a route or an error of 401/404/405,
// never both; an error body that is valid JSON text of OpenAI's shape. A violation
// aborts, as a finding.
//
// Input: the bytes a client sends (one or more pipelined requests).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>

#include "coordinator/http/http_response.h"
#include "coordinator/http/http_routes.h"
#include "coordinator/http/http_server.h"

namespace bhttp = boost::beast::http;

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

void Route(const bhttp::request<bhttp::string_body>& request) {
  static const std::vector<std::string> kKeys = {"sk-fuzz"};
  const auto method = request.method_string();
  const auto target = request.target();
  const auto authorization = request[bhttp::field::authorization];
  const flover::http::Resolution r =
      flover::http::Resolve(std::string_view(method.data(), method.size()), std::string_view(target.data(), target.size()),
                            std::string_view(authorization.data(), authorization.size()), kKeys);
  if (r.route) return;
  const int status = r.error.status;
  Check(status == 401 || status == 404 || status == 405);
  Check((status == 405) == !r.allow.empty());
  const std::string response = flover::http::ErrorResponse(r.error, true);
  const size_t body = response.find("\r\n\r\n");
  Check(body != std::string::npos);
  const nlohmann::json json = nlohmann::json::parse(response.substr(body + 4), nullptr, /*allow_exceptions=*/false);
  Check(json.is_object() && json.contains("error") && json["error"]["message"].is_string());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (int requests = 0; !bytes.empty() && requests < 16; ++requests) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(flover::http::kMaxHeaderBytes);
    parser.body_limit(64 << 10);
    parser.eager(true);
    boost::system::error_code ec;
    // Fed as a socket delivers bytes and as Beast's read loop hands them on: a growing
    // window of delivered bytes, put() again from the first one it has not consumed.
    size_t used = 0, delivered = 0;
    while (!parser.is_done()) {
      const size_t left = bytes.size() - delivered;
      delivered += std::min<size_t>(left, 1 + left % 97);
      const size_t n = parser.put(boost::asio::buffer(bytes.data() + used, delivered - used), ec);
      used += n;
      if (ec == bhttp::error::need_more) {
        if (delivered == bytes.size()) break;
        ec = {};
        continue;
      }
      if (ec) break;
      if (n == 0 && delivered == bytes.size()) break;
    }
    if (!parser.is_done()) return 0;
    Route(parser.get());
    bytes.remove_prefix(used);
  }
  return 0;
}

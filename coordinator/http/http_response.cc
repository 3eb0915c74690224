#include "coordinator/http/http_response.h"

#include <fmt/format.h>

namespace flover::http {

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

std::string ResponseHead(const Head& head) {
  std::string out = fmt::format("HTTP/1.{} {} {}\r\n", head.http10 ? 0 : 1, head.status, ReasonPhrase(head.status));
  if (!head.content_type.empty()) out += fmt::format("Content-Type: {}\r\n", head.content_type);
  if (head.content_length) {
    out += fmt::format("Content-Length: {}\r\n", *head.content_length);
  } else if (!head.http10) {
    out += "Transfer-Encoding: chunked\r\n";
  }
  if (head.content_type == "text/event-stream") out += "Cache-Control: no-cache\r\n";
  // HTTP/1.0 closes by default; without a length, the end of the body is the close.
  const bool keep_alive = head.keep_alive && (head.content_length || !head.http10);
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (head.http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += head.extra_headers;
  out += "\r\n";
  return out;
}

std::string Response(Head head, std::string_view body) {
  head.content_length = body.size();
  std::string out = ResponseHead(head);
  out += body;
  return out;
}

std::string ErrorResponse(const openai::ApiError& error, bool keep_alive, bool http10, std::string_view extra_headers) {
  return Response({.status = error.status,
                   .content_type = "application/json",
                   .keep_alive = keep_alive,
                   .http10 = http10,
                   .extra_headers = extra_headers},
                  openai::ErrorBody(error));
}

std::string Chunk(std::string_view bytes) {
  if (bytes.empty()) return {};
  return fmt::format("{:x}\r\n{}\r\n", bytes.size(), bytes);
}

}  // namespace flover::http

// The bytes of HTTP/1.1 responses the server writes itself: a head, a whole response
// with Content-Length, and the chunks of a chunked body (SSE streams). Pure functions.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "coordinator/openai/exchange.h"

namespace flover::http {

// "Not Found" for 404, ... ("Unknown" for a status it does not name).
std::string_view ReasonPhrase(int status);

struct Head {
  int status = 200;
  std::string_view content_type;
  std::optional<size_t> content_length;  // nullopt: chunked (HTTP/1.1), or until close (HTTP/1.0)
  bool keep_alive = true;                // false: Connection: close
  bool http10 = false;                   // answer an HTTP/1.0 request (no chunked encoding)
  std::string_view extra_headers;        // whole lines, each ending in \r\n
};

// The status line and headers, ending with the empty line.
std::string ResponseHead(const Head& head);

// A whole response: head with Content-Length, then `body`.
std::string Response(Head head, std::string_view body);

// An OpenAI error (openai::ErrorBody) as a whole application/json response.
std::string ErrorResponse(const openai::ApiError& error, bool keep_alive, bool http10 = false,
                          std::string_view extra_headers = {});

// One chunk of a chunked body ("" for empty `bytes`: an empty chunk would end the body).
std::string Chunk(std::string_view bytes);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

}  // namespace flover::http

// OpenAI-shaped errors: the request's own faults (a field of the wrong type or out of
// range, an unknown model) and the cluster's refusals (a proto::Error), as ApiError
// values the HTTP server writes with ErrorBody (declared in exchange.h).
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "common/proto/flover.pb.h"
#include "coordinator/openai/exchange.h"

namespace flover::openai {

// 400 invalid_request_error naming the field at fault (`param`, e.g. "temperature",
// "messages[1].content").
ApiError InvalidParam(std::string param, std::string message);

// 404 model_not_found, as OpenAI answers a request for a model it does not serve.
ApiError ModelNotFound(const std::string& requested, const std::string& served);

// The HTTP status of a core error code (a StatusCode name): InvalidArgument 400,
// PermissionDenied 403, NotFound 404, ResourceExhausted 429, Unavailable 503,
// DeadlineExceeded 504, anything else 500.
int StatusOfCoreCode(const std::string& code);

// The ApiError of an Error the cluster sent: the status above, an OpenAI-style type
// for it, the core's message, and the core's code name as `code`.
ApiError ErrorFromCore(const proto::Error& error);

}  // namespace flover::openai

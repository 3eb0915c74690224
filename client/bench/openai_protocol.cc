#include "client/bench/openai_protocol.h"

#include <nlohmann/json.hpp>

namespace flover {
namespace {

using nlohmann::json;

int IntOr(const json& object, const char* key, int fallback) {
  if (!object.is_object()) return fallback;
  const auto it = object.find(key);
  return it != object.end() && it->is_number_integer() ? it->get<int>() : fallback;
}

std::string ErrorMessageOf(const json& error) {
  if (error.is_string()) return error.get<std::string>();
  if (error.is_object()) {
    const auto message = error.find("message");
    if (message != error.end() && message->is_string()) return message->get<std::string>();
  }
  return error.dump();
}

}  // namespace

Result<HttpEndpoint> ParseServerUrl(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind("https://", 0) == 0)
    return InvalidArgument("--endpoint " + url +
                           ": https is not supported by flover bench; measure the server over plain http (on "
                           "loopback, or through a TLS-terminating proxy)");
  if (url.rfind(scheme, 0) != 0)
    return InvalidArgument("--endpoint " + url + ": --api openai needs an http://HOST:PORT URL");
  std::string rest = url.substr(scheme.size());
  const size_t slash = rest.find('/');
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  const std::string authority = rest.substr(0, slash);
  HttpEndpoint e;
  size_t port_colon = std::string::npos;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos) return InvalidArgument("--endpoint " + url + ": unclosed [ in the host");
    e.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return InvalidArgument("--endpoint " + url + ": bad host");
      port_colon = close + 1;
    }
  } else {
    port_colon = authority.find(':');
    e.host = authority.substr(0, port_colon);
  }
  e.port = port_colon == std::string::npos ? "80" : authority.substr(port_colon + 1);
  if (e.host.empty()) return InvalidArgument("--endpoint " + url + ": no host");
  if (e.port.empty() || e.port.size() > 5 || e.port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(e.port) < 1 || std::stoi(e.port) > 65535)
    return InvalidArgument("--endpoint " + url + ": the port must be a number in 1..65535");
  if (path.find_first_of("?#") != std::string::npos)
    return InvalidArgument("--endpoint " + url + ": no query or fragment, please");
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.size() >= 3 && path.compare(path.size() - 3, 3, "/v1") == 0) path.resize(path.size() - 3);
  e.base_path = path;
  return e;
}

std::string CompletionRequestBody(const CompletionRequest& r) {
  json body = {{"model", r.model},
               {"max_tokens", r.max_tokens},
               {"temperature", 0},
               {"seed", r.seed},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  if (r.prompt_ids.empty()) {
    body["prompt"] = r.prompt_text;
  } else {
    body["prompt"] = r.prompt_ids;
  }
  if (r.ignore_eos) {
    body["ignore_eos"] = true;             // vLLM, llama.cpp's server, Flover
    body["min_tokens"] = r.max_tokens;     // vLLM, llama-cpp-python (which has no ignore_eos)
  }
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

StreamEvent InterpretStreamEvent(const SseEvent& event) {
  StreamEvent out;
  if (event.data == "[DONE]") {
    out.kind = StreamEvent::kDone;
    return out;
  }
  const json j = json::parse(event.data, nullptr, /*allow_exceptions=*/false);
  if (event.type == "error") {
    out.kind = StreamEvent::kError;
    out.error = j.is_object() && j.contains("error") ? ErrorMessageOf(j["error"])
                : j.is_discarded()                   ? event.data
                                                     : ErrorMessageOf(j);
    return out;
  }
  if (!j.is_object()) {
    out.kind = StreamEvent::kError;
    out.error = "the server sent an event that is not a JSON object: " + event.data.substr(0, 200);
    return out;
  }
  if (const auto error = j.find("error"); error != j.end() && !error->is_null()) {
    out.kind = StreamEvent::kError;
    out.error = ErrorMessageOf(*error);
    return out;
  }
  if (const auto choices = j.find("choices"); choices != j.end() && choices->is_array() && !choices->empty()) {
    const json& choice = choices->front();
    std::string text;
    bool has_text = false;
    if (const auto t = choice.find("text"); t != choice.end() && t->is_string()) {
      text = t->get<std::string>();
      has_text = true;
    }
    if (const auto f = choice.find("finish_reason"); f != choice.end() && f->is_string())
      out.finish_reason = f->get<std::string>();
    out.token = has_text && (!text.empty() || out.finish_reason.empty());
  }
  if (const auto usage = j.find("usage"); usage != j.end() && usage->is_object()) {
    if (const int p = IntOr(*usage, "prompt_tokens", -1); p >= 0) out.prompt_tokens = p;
    if (const int c = IntOr(*usage, "completion_tokens", -1); c >= 0) out.completion_tokens = c;
  }
  return out;
}

std::string HttpErrorText(int status, const std::string& body) {
  std::string message;
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    for (const char* key : {"error", "message", "detail"}) {
      if (const auto it = j.find(key); it != j.end() && !it->is_null()) {
        message = ErrorMessageOf(*it);
        break;
      }
    }
  }
  if (message.empty()) message = body.size() > 300 ? body.substr(0, 300) + "..." : body;
  return "HTTP " + std::to_string(status) + (message.empty() ? "" : ": " + message);
}

Result<ServedModelInfo> ParseModelList(const std::string& body, const std::string& wanted) {
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("data") || !j["data"].is_array())
    return InvalidArgument("GET /v1/models did not answer a model list: " + body.substr(0, 200));
  std::string ids;
  for (const json& m : j["data"]) {
    if (!m.is_object() || !m.contains("id") || !m["id"].is_string()) continue;
    const std::string id = m["id"].get<std::string>();
    ids += (ids.empty() ? "" : ", ") + id;
    if (!wanted.empty() && id != wanted) continue;
    ServedModelInfo info;
    info.id = id;
    const json meta = m.contains("meta") ? m["meta"] : json();
    info.vocab_size = IntOr(meta, "n_vocab", 0);
    info.max_seq_len = IntOr(m, "max_model_len", IntOr(meta, "n_ctx_train", 0));
    return info;
  }
  if (ids.empty()) return InvalidArgument("GET /v1/models lists no model");
  return NotFound("--model " + wanted + ": the server does not serve it (it serves: " + ids + ")");
}

}  // namespace flover

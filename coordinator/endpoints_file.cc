#include "coordinator/endpoints_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace flover {

std::string EndpointsJson(const EndpointsConfig& endpoints) {
  nlohmann::json j = {{"client", endpoints.client}, {"control", endpoints.control}, {"plans", endpoints.plans}};
  if (!endpoints.http.empty()) j["http"] = endpoints.http;
  return j.dump() + "\n";
}

Status WriteEndpointsFile(const std::string& path, const EndpointsConfig& endpoints) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return IoError(tmp + ": cannot create: " + std::strerror(errno));
    out << EndpointsJson(endpoints);
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return IoError(tmp + ": cannot write: " + std::strerror(errno));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    return IoError(path + ": cannot rename " + tmp + " to it: " + reason);
  }
  return Status::Ok();
}

Result<EndpointsConfig> ReadEndpointsFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open: " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Corruption(path + ": not a JSON object");
  EndpointsConfig endpoints;
  for (auto [key, field] : {std::pair{"client", &endpoints.client}, std::pair{"control", &endpoints.control},
                            std::pair{"plans", &endpoints.plans}}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return Corruption(path + ": \"" + key + "\" is missing or not a string");
    *field = it->get<std::string>();
  }
  // Optional: only a coordinator with an HTTP server writes it.
  if (auto it = j.find("http"); it != j.end()) {
    if (!it->is_string()) return Corruption(path + ": \"http\" is not a string");
    endpoints.http = it->get<std::string>();
  }
  return endpoints;
}

}  // namespace flover

// The endpoints file: where a running coordinator can be reached, for `flover up` and
// tests that bind "tcp://127.0.0.1:*". A small JSON object with the resolved (bound,
// ports read back) endpoints:
//
//   {"client": "tcp://127.0.0.1:40123", "control": "tcp://127.0.0.1:40124",
//    "plans": "tcp://127.0.0.1:40125", "http": "http://127.0.0.1:40126"}
//
// "http" only when the coordinator serves HTTP (endpoints.http).
//
// Written atomically (a temporary file in the same folder, then rename), so a reader
// never sees a partial file.
//
// Thread-safety: pure functions (they touch only the named files).
#pragma once

#include <string>

#include "common/cluster_config.h"
#include "common/status.h"

namespace flover {

std::string EndpointsJson(const EndpointsConfig& endpoints);

// IoError naming the path when the file cannot be written or renamed.
Status WriteEndpointsFile(const std::string& path, const EndpointsConfig& endpoints);

// Reads a file written by WriteEndpointsFile. NotFound / Corruption naming the path.
Result<EndpointsConfig> ReadEndpointsFile(const std::string& path);

}  // namespace flover

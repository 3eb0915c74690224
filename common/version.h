// The version a binary prints for --version: the project's (CMake project(VERSION),
// FLOVER_VERSION, defined by the flover_version target that the binaries link) and the
// wire protocol's (kProtocolVersion: peers must speak the same one).
#pragma once

#include <string>

#include "common/protocol.h"

#ifndef FLOVER_VERSION
#error "FLOVER_VERSION is not defined: link the flover_version CMake target"
#endif

namespace flover {

// "flover-worker 0.1.0 (protocol 3)".
inline std::string VersionLine(const std::string& program) {
  return program + " " FLOVER_VERSION " (protocol " + std::to_string(kProtocolVersion) + ")";
}

}  // namespace flover

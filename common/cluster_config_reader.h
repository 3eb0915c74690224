// The cluster config reader: YAML text or file -> a validated ClusterConfig
// (cluster_config.h lists the sections and keys; configs/local.yaml is a commented
// example).
//
//  * Every error is a Status whose message names the file and the key path:
//    "configs/x.yaml: scheduler.policy: 'fast' is not one of fused, dynamic, ...".
//    Unknown and duplicate keys are errors. A missing file is NotFound, everything else
//    InvalidArgument. No exception escapes this module.
//  * Every scalar value gets environment expansion (config_env.h) before it is
//    interpreted, and must then be valid UTF-8 (YAML is Unicode text, and the config's
//    strings travel in protobuf string fields).
//  * Enum values (scheduler.policy, parallel.cpu_transport, model.dtype) are read by
//    their names; every other rule is ClusterConfig::Validate's, which the reader calls.
//  * A relative model.path / model.tokenizer (after expansion; "dummy:<preset>" is not
//    a file) is resolved against the directory of the config file.
//  * `workers` is optional; when absent every (replica, rank) runs on 127.0.0.1 with
//    device cpu (at most 65536 of them: more is an error, not a list to build). When given it must list every (replica, rank) exactly once; the result
//    is sorted by (replica, rank).
//
// Thread-safety: pure functions (they read the environment and the file system).
#pragma once

#include <string>

#include "common/cluster_config.h"
#include "common/status.h"

namespace flover {

// Reads, parses and validates `path`. `source` is `path` as given; relative model
// paths are resolved against the (absolute) directory of `path`.
Result<ClusterConfig> LoadClusterConfig(const std::string& path);

// Parses and validates YAML text. `source` prefixes every error message; relative model
// paths are resolved against `base_dir` (left relative when base_dir is empty).
Result<ClusterConfig> ParseClusterConfig(const std::string& yaml_text, const std::string& source,
                                         const std::string& base_dir);

}  // namespace flover

// The cluster config writer: ClusterConfig -> YAML, for the configs `flover bench`
// writes for the clusters it starts. What it writes, ParseClusterConfig reads back into
// an equal config.
//
// Thread-safety: a pure function.
#pragma once

#include <string>

#include "common/cluster_config.h"

namespace flover {

// Every field written explicitly, workers included; '$' escaped as "$$" (config_env.h);
// a comment names config.source when it is not empty.
std::string ToYaml(const ClusterConfig& config);

}  // namespace flover

// ClusterConfig <-> proto::ClusterConfig (flover.proto): how the coordinator hands the
// config it runs to its workers (RegisterReply.config). Field for field, enums as proto
// enums; the workers never parse the YAML again.
//
// FromProto trusts nothing: a buggy or hostile coordinator gets a clear InvalidArgument
// naming the key ("configs/x.yaml: scheduler.policy: 9 is not a value this build
// knows"), never a crash or an invalid config. Thread-safety: pure functions.
#pragma once

#include "common/cluster_config.h"
#include "common/status.h"
#include "flover.pb.h"

namespace flover {

// REQUIRES: config.Validate() is OK (an enum outside its values is sent as 0, which
// FromProto rejects).
proto::ClusterConfig ToProto(const ClusterConfig& config);

// The config `message` describes, validated (ClusterConfig::Validate). Workers keep the
// order the message lists them in. FromProto(ToProto(c)) == c for every valid c.
Result<ClusterConfig> FromProto(const proto::ClusterConfig& message);

}  // namespace flover

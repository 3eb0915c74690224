// SchedulerPolicy: the value of scheduler.policy, how a replica's scheduler forms its
// steps (coordinator/scheduler.h says what each policy does). The config reader, the
// wire config and `flover bench --policies` spell them the same way.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flover {

enum class SchedulerPolicy { kFused, kDynamic, kInstances, kSequential };

// "fused", "dynamic", "instances", "sequential" (the names of scheduler.policy).
const char* SchedulerPolicyName(SchedulerPolicy policy);

// The policy of that name; nullopt for any other.
std::optional<SchedulerPolicy> SchedulerPolicyFromName(std::string_view name);

// Every name, in the order error messages list them.
const std::vector<std::string>& SchedulerPolicyNames();

}  // namespace flover

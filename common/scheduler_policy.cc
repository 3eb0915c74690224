#include "common/scheduler_policy.h"

#include "common/enum_names.h"

namespace flover {
namespace {

constexpr EnumNames<SchedulerPolicy, 4> kNames = {{{{SchedulerPolicy::kFused, "fused"},
                                                    {SchedulerPolicy::kDynamic, "dynamic"},
                                                    {SchedulerPolicy::kInstances, "instances"},
                                                    {SchedulerPolicy::kSequential, "sequential"}}}};

}  // namespace

const char* SchedulerPolicyName(SchedulerPolicy policy) { return kNames.Name(policy); }

std::optional<SchedulerPolicy> SchedulerPolicyFromName(std::string_view name) { return kNames.FromName(name); }

const std::vector<std::string>& SchedulerPolicyNames() {
  static const std::vector<std::string> names = kNames.Names();
  return names;
}

}  // namespace flover

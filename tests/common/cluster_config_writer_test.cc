// Tests the cluster config writer (common/cluster_config_writer.h): what ToYaml writes,
// the reader reads back into an equal config.
#include "common/cluster_config_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/common/cluster_config_test_util.h"

namespace flover {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace config_testing;

TEST(ClusterConfigToYaml, RoundTripsEveryField) {
  const ClusterConfig config = EveryFieldSet();
  ASSERT_TRUE(config.Validate().ok()) << config.Validate().ToString();
  const std::string yaml = ToYaml(config);
  Result<ClusterConfig> again = ParseClusterConfig(yaml, "derived.yaml", "/somewhere");
  ASSERT_TRUE(again.ok()) << again.status().ToString() << "\n" << yaml;
  EXPECT_EQ(*again, config) << yaml;
  EXPECT_EQ(again->name, config.name);
  EXPECT_EQ(again->kv_cache.memory_mib, 0.1);
  EXPECT_EQ(again->model.dummy_seed, config.model.dummy_seed);
  EXPECT_THAT(yaml, HasSubstr("# Derived from derived.yaml"));
}

TEST(ClusterConfigToYaml, RoundTripsEveryEnumValue) {
  ClusterConfig gpu = EveryFieldSet();
  for (WorkerConfig& w : gpu.workers) w.device = "cuda:" + std::to_string(w.rank);
  for (const ClusterConfig& config : EveryEnumValue(gpu)) {
    const std::string yaml = ToYaml(config);
    Result<ClusterConfig> again = ParseClusterConfig(yaml, "derived.yaml", "");
    ASSERT_TRUE(again.ok()) << again.status().ToString() << "\n" << yaml;
    EXPECT_EQ(*again, config) << yaml;
    EXPECT_THAT(yaml, HasSubstr(std::string("policy: ") + SchedulerPolicyName(config.scheduler.policy)));
    EXPECT_THAT(yaml, HasSubstr(std::string("cpu_transport: ") + CpuTransportName(config.cpu_transport)));
    EXPECT_THAT(yaml, HasSubstr(std::string("dtype: ") + ModelDTypeName(config.model.dtype)));
  }
}

TEST(ClusterConfigToYaml, RoundTripsEveryKvDType) {
  ClusterConfig cpu = EveryFieldSet();
  for (WorkerConfig& w : cpu.workers) w.device = "cpu";
  for (std::optional<DType> dtype : {std::optional<DType>(), std::optional(DType::kF32), std::optional(DType::kF16),
                                     std::optional(DType::kBF16)}) {
    cpu.kv_cache.dtype = dtype;
    const std::string yaml = ToYaml(cpu);
    Result<ClusterConfig> again = ParseClusterConfig(yaml, "derived.yaml", "");
    ASSERT_TRUE(again.ok()) << again.status().ToString() << "\n" << yaml;
    EXPECT_EQ(*again, cpu) << yaml;
  }
}

TEST(ClusterConfigToYaml, DefaultsRoundTrip) {
  Result<ClusterConfig> config = Parse(kMinimal);
  ASSERT_TRUE(config.ok());
  Result<ClusterConfig> again = Parse(ToYaml(*config));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, *config);
  EXPECT_THAT(ToYaml(*config), ::testing::Not(HasSubstr("tokenizer")));
}

TEST(ClusterConfigFiles, EveryShippedConfigLoadsAndRoundTrips) {
  int n_files = 0;
  for (const auto& entry : fs::directory_iterator(kSourceDir + "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    ++n_files;
    Result<ClusterConfig> config = LoadClusterConfig(entry.path().string());
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    Result<ClusterConfig> again = ParseClusterConfig(ToYaml(*config), config->source, "/elsewhere");
    ASSERT_TRUE(again.ok()) << again.status().ToString() << "\n" << ToYaml(*config);
    EXPECT_EQ(*again, *config) << entry.path();
  }
  EXPECT_GE(n_files, 3);
}

}  // namespace
}  // namespace flover

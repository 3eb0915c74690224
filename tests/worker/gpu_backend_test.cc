#include "worker/gpu_backend.h"

#include <gtest/gtest.h>

#include "common/cluster_config_reader.h"
#include "worker/comm/kv_store.h"

namespace flover {
namespace {

ClusterConfig GpuConfig(const std::string& device) {
  Result<ClusterConfig> config = ParseClusterConfig(
      "endpoints: {control: 'tcp://127.0.0.1:5556'}\n"
      "model: {path: 'dummy:tiny', dtype: fp16}\n"
      "workers: [{replica: 0, rank: 0, device: '" + device + "'}]\n",
      "gpu.yaml", "");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? std::move(config).value() : ClusterConfig{};
}

// A device this machine does not have is a clear Unavailable, in every build: with CUDA
// (no such device) and without (no CUDA at all).
TEST(GpuBackendTest, AMissingDeviceIsAClearError) {
  InMemoryKvStore store;
  Result<GpuBackend> gpu = CreateGpuBackend(GpuConfig("cuda:99"), 0, 0, "cuda:99", store);
  ASSERT_FALSE(gpu.ok());
  EXPECT_EQ(gpu.status().code(), StatusCode::kUnavailable) << gpu.status().ToString();
  EXPECT_NE(gpu.status().message().find("cuda:99"), std::string::npos) << gpu.status().ToString();
#ifndef FLOVER_HAVE_CUDA
  EXPECT_NE(gpu.status().message().find("built without CUDA"), std::string::npos) << gpu.status().ToString();
#else
  EXPECT_NE(gpu.status().message().find("is not visible"), std::string::npos) << gpu.status().ToString();
#endif
}

#ifdef FLOVER_HAVE_CUDA
TEST(GpuBackendTest, ADeviceNumberBeyondIntIsInvalidNotACrash) {
  InMemoryKvStore store;
  Result<GpuBackend> gpu =
      CreateGpuBackend(GpuConfig("cuda:99999999999"), 0, 0, "cuda:99999999999", store);
  ASSERT_FALSE(gpu.ok());
  EXPECT_EQ(gpu.status().code(), StatusCode::kInvalidArgument) << gpu.status().ToString();
}
#endif

}  // namespace
}  // namespace flover

// CreateBackend (worker/backend.h): the device names it takes, the errors for devices
// this build or machine does not have, what it builds on the CPU, and `flover run
// --device` on a device that is not there (a clear error, not a crash).
#include "worker/backend.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "tests/test_paths.h"
#ifdef FLOVER_HAVE_CUDA
#include "kernels/cuda/device.h"
#endif

namespace flover {
namespace {

BackendConfig Config(const std::string& device) {
  BackendConfig config;
  config.device = device;
  config.model = "dummy:tiny";
  return config;
}

// A device this machine does not have is a clear Unavailable, in every build: with CUDA
// (no such device) and without (no CUDA at all).
TEST(CreateBackendTest, AMissingDeviceIsAClearError) {
  Result<CreatedBackend> created = CreateBackend(Config("cuda:99"));
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kUnavailable) << created.status().ToString();
  EXPECT_NE(created.status().message().find("cuda:99"), std::string::npos) << created.status().ToString();
#ifndef FLOVER_HAVE_CUDA
  EXPECT_NE(created.status().message().find("built without CUDA"), std::string::npos) << created.status().ToString();
#else
  EXPECT_NE(created.status().message().find("is not visible"), std::string::npos) << created.status().ToString();
#endif
}

TEST(CreateBackendTest, UnknownDevicesAreInvalid) {
  for (const std::string device : {"tpu", "cuda:", "cuda:-1", "cuda:1x", "cuda:99999999999", "CPU"}) {
    Result<CreatedBackend> created = CreateBackend(Config(device));
    ASSERT_FALSE(created.ok()) << device;
    EXPECT_EQ(created.status().code(), StatusCode::kInvalidArgument) << device << ": " << created.status().ToString();
    EXPECT_NE(created.status().message().find("neither cpu nor cuda:N"), std::string::npos)
        << created.status().ToString();
  }
}

TEST(CreateBackendTest, CpuBuildsTheModelItsPoolAndDescription) {
  BackendConfig config = Config("cpu");
  config.model = testing::Stories260kBin();
  config.kv_block_size = 8;
  Result<CreatedBackend> created = CreateBackend(config);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  const ForwardBackend& backend = *created->backend;
  EXPECT_EQ(backend.spec().vocab_size, 512);
  EXPECT_EQ(backend.kv_block_size(), 8);
  EXPECT_GT(backend.kv_blocks(), 1000) << "1 GiB of stories260K's KV";
  EXPECT_NE(created->description.find("stories260K"), std::string::npos) << created->description;
  EXPECT_NE(created->description.find(", cpu, "), std::string::npos) << created->description;
  EXPECT_FALSE(created->tokenizer.has_value()) << "a llama2.c checkpoint has no vocabulary";

  // At most what 3 full contexts of 512 tokens use: 3 * 64 blocks of 8.
  config.kv_max_sequences = 3;
  created = CreateBackend(config);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(created->backend->kv_blocks(), 192);
  config.kv_max_blocks = 100;
  created = CreateBackend(config);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(created->backend->kv_blocks(), 100);
}

TEST(CreateBackendTest, ModelErrorsAndCheckModelComeThrough) {
  BackendConfig config = Config("cpu");
  config.model = "/nonexistent/model.bin";
  EXPECT_EQ(CreateBackend(config).status().code(), StatusCode::kNotFound);
  config.model = "dummy:tiny";
  config.check_model = [](const ModelSpec& spec) { return InvalidArgument("refused " + spec.ToString()); };
  Result<CreatedBackend> refused = CreateBackend(config);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("refused"), std::string::npos) << refused.status().ToString();
}

// `flover run --device cuda:0` where no GPU (or no CUDA) is: exit 1 with the reason.
TEST(CreateBackendTest, FloverRunOnAMissingGpuFailsCleanly) {
  const std::string err_file = ::testing::TempDir() + "/flover_run_device_stderr.txt";
  const std::string cmd = std::string(FLOVER_BIN) + " run --model dummy:tiny --prompt-ids 1,5,6 --max-tokens 4" +
                          " --device cuda:0 >/dev/null 2>" + err_file;
#ifdef FLOVER_HAVE_CUDA
  if (cuda::DeviceCount() > 0) GTEST_SKIP() << "a GPU is visible: cuda:0 is not missing here";
#endif
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << "flover run died from a signal";
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::string err;
  if (FILE* f = fopen(err_file.c_str(), "r")) {
    std::array<char, 4096> buf;
    for (size_t n; (n = fread(buf.data(), 1, buf.size(), f)) > 0;) err.append(buf.data(), n);
    fclose(f);
  }
  EXPECT_NE(err.find("flover run: Unavailable: "), std::string::npos) << err;
  EXPECT_NE(err.find("cuda:0"), std::string::npos) << err;
#ifdef FLOVER_HAVE_CUDA
  EXPECT_NE(err.find("is not visible"), std::string::npos) << err;
#else
  EXPECT_NE(err.find("built without CUDA"), std::string::npos) << err;
#endif
}

}  // namespace
}  // namespace flover

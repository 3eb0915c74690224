// The `flover bench` subcommand's command-line flags (CLI11): main.cc registers it and
// runs it when it was the one parsed; the flags, their help and their cross-checks live
// here beside the command.
#pragma once

#include <CLI/CLI.hpp>

#include "client/bench/bench_command.h"

namespace flover {

class BenchSubcommand {
 public:
  // Adds "bench" to `app`. REQUIRES: `app` outlives this object.
  explicit BenchSubcommand(CLI::App* app);
  bool parsed() const { return cmd_->parsed(); }
  // BenchCommand with the parsed flags; its exit status.
  int Run();

 private:
  CLI::App* cmd_;
  BenchOptions options_;
  double interval_ms_ = 0, rate_ = 0, mean_interval_ms_ = 0, ready_timeout_s_ = 0, slo_ttft_ms_ = 0, slo_tpot_ms_ = 0;
  CLI::Option *interval_, *rate_flag_, *mean_interval_, *ready_timeout_, *slo_ttft_, *slo_tpot_;
};

}  // namespace flover

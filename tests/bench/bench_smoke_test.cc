// SPDX-License-Identifier: Apache-2.0
//
// stockade-bench for real, tiny: every contender loads its rules with the
// real tools in the testbed's namespaces and carries real traffic, the floods
// go through trafgen, the agent runs; then nothing of it may be left: no
// namespace of the testbed, no agent pins, no scratch files. The same after a
// failure and after an interrupt.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/support/bpf_test_env.h"
#include "tools/bench/runner.h"
#include "tools/bench/traffic.h"

namespace stockade::bench {
namespace {

namespace fs = std::filesystem;

class BenchSmokeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STOCKADE_REQUIRE_PRIVILEGES();
    out_dir_ = absl::StrCat(::testing::TempDir(), "/stockade-bench-", getpid(), "-", counter_++);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(out_dir_, ec);
  }

  BenchOptions Smoke() {
    BenchOptions o = DefaultOptions(BenchMode::kSmoke);
    o.out_dir = out_dir_;
    o.stockaded_path = STOCKADED_PATH;
    return o;
  }

  // Nothing the run made is left on the machine.
  void ExpectNothingLeft(const BenchRun& run) {
    ASSERT_FALSE(run.testbed_prefix.empty());
    for (const auto& entry : fs::directory_iterator("/run/netns")) {
      EXPECT_FALSE(absl::StartsWith(entry.path().filename().string(), run.testbed_prefix))
          << entry.path() << " is left";
    }
    EXPECT_FALSE(fs::exists(absl::StrCat("/sys/fs/bpf/stockade/", run.agent_instance)));
    EXPECT_FALSE(fs::exists(absl::StrCat(out_dir_, "/scratch-", run.testbed_prefix)));
  }

  // A BPF contender has its program's time per packet, and no other has one.
  // Even a program that returns at once takes some ns a run to time.
  static void ExpectProgramTime(const std::map<Results::Key, Results::Summary>& summary, const char* measure,
                                ContenderKind kind, const std::string& contender, size_t n) {
    auto it = summary.find({measure, contender, n});
    ASSERT_EQ(it != summary.end(), IsBpfProgram(kind)) << measure << " of " << contender << " at N=" << n;
    if (it != summary.end()) {
      EXPECT_GT(it->second.values.Median(), 0) << measure << " of " << contender << " at N=" << n;
      EXPECT_LT(it->second.values.Median(), 100'000) << measure << " of " << contender << " at N=" << n;
    }
  }

  std::string out_dir_;
  static inline int counter_ = 0;
};

TEST_F(BenchSmokeTest, EveryContenderProducesFiguresAndNothingIsLeft) {
  Results results;
  BenchRun run;
  absl::Status status = RunBench(Smoke(), results, run);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(run.agent_error, "");
  auto summary = results.Summarize();
  for (ContenderKind kind : kAllContenders) {
    for (size_t n : {0, 100}) {
      if (IsFloodOnly(kind)) break;
      for (const char* measure : {"udp_delivered_kpps", "udp_cpu_ns_per_pkt", "denied_udp_sent_kpps", "tcp_rr_p99_us",
                                  "tcp_crr_per_s", "tcp_stream_gbps"}) {
        auto it = summary.find({measure, ContenderName(kind), n});
        ASSERT_NE(it, summary.end()) << measure << " of " << ContenderName(kind) << " at N=" << n;
        EXPECT_GT(it->second.values.Median(), 0) << measure << " of " << ContenderName(kind) << " at N=" << n;
      }
      for (const char* measure : {"update_bulk_ms", "update_one_us"}) {
        EXPECT_EQ(summary.contains({measure, ContenderName(kind), n}), HasRuleSet(kind))
            << measure << " of " << ContenderName(kind);
      }
      ExpectProgramTime(summary, "udp_prog_ns_per_pkt", kind, ContenderName(kind), n);
    }
    if (*FloodDropName(kind)) {
      EXPECT_TRUE(summary.contains({"flood_drop_kpps", FloodDropName(kind), 0})) << FloodDropName(kind);
      ExpectProgramTime(summary, "flood_prog_ns_per_pkt", kind, FloodDropName(kind), 0);
    }
  }
  EXPECT_TRUE(summary.contains({"agent_start_to_enforce_ms", "stockaded", 100}));
  EXPECT_TRUE(summary.contains({"agent_change_to_enforce_ms", "stockaded", 100}));
  for (const char* file : {"results.csv", "table.txt", "bench.png", "bench.svg", "machine.txt"})
    EXPECT_GT(fs::file_size(absl::StrCat(out_dir_, "/", file)), 0u) << file;
  ExpectNothingLeft(run);
}

TEST_F(BenchSmokeTest, AFailureMidRunLeavesNothing) {
  BenchOptions o = Smoke();
  o.contenders = {ContenderKind::kIpset, ContenderKind::kStockadeTc};
  o.rule_counts = {100};
  o.fail_after_install = true;
  Results results;
  BenchRun run;
  absl::Status status = RunBench(o, results, run);
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << status;
  ExpectNothingLeft(run);
}

TEST_F(BenchSmokeTest, AnInterruptStopsTheRunAndLeavesNothing) {
  BenchOptions o = Smoke();
  o.contenders = {ContenderKind::kNone, ContenderKind::kNftSet};
  g_interrupted = true;
  Results results;
  BenchRun run;
  absl::Status status = RunBench(o, results, run);
  g_interrupted = false;
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_TRUE(results.samples().empty());
  ExpectNothingLeft(run);
}

}  // namespace
}  // namespace stockade::bench

// SPDX-License-Identifier: Apache-2.0
//
// One run of stockade-bench: builds a testbed per contender, then for each N
// loads every contender's rules and measures them in interleaved rounds
// (ABBA), then the denied floods (trafgen), then updates through the real
// agent; writes CSV, table and plots. Everything it made is removed when it
// returns, on success, on error, or after an interrupt (g_interrupted).
#ifndef STOCKADE_TOOLS_BENCH_RUNNER_H_
#define STOCKADE_TOOLS_BENCH_RUNNER_H_

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tools/bench/contenders.h"
#include "tools/bench/results.h"

namespace stockade::bench {

enum class BenchMode { kSmoke, kQuick, kFull };

struct BenchOptions {
  BenchMode mode = BenchMode::kQuick;
  std::vector<size_t> rule_counts;
  int rounds = 2;
  std::vector<ContenderKind> contenders;
  int udp_flows = 4;
  std::chrono::milliseconds udp_duration{200};
  std::chrono::milliseconds denied_udp_duration{200};
  uint64_t udp_max_packets = 5'000'000;
  int rr_iterations = 500;
  std::chrono::milliseconds rr_limit{300};
  std::chrono::milliseconds crr_duration{200};
  int iperf_seconds = 1;
  uint64_t iperf_bytes = 0;  // > 0: a transfer of this size instead of seconds
  int add_one_reps = 3;
  bool floods = true;
  uint64_t flood_packets = 300'000;
  // The BPF contenders' own time per packet is measured apart, with the
  // kernel's run-time statistics on: an allowed UDP flood this long, and a
  // trafgen flood of this many frames.
  std::chrono::milliseconds program_runs_duration{100};
  uint64_t program_runs_flood_packets = 100'000;
  bool agent = true;
  size_t agent_filler_rules = 1000;
  int agent_changes = 2;
  std::string stockaded_path;  // required when agent is set
  std::string out_dir;         // created if missing
  // For tests: fail as if something broke, after the first N's installs.
  bool fail_after_install = false;
};

BenchOptions DefaultOptions(BenchMode mode);

// What a run made, so a caller (or test) can check that it is gone.
struct BenchRun {
  std::string testbed_prefix;  // every namespace is "<prefix>-..."
  std::string agent_instance;  // /sys/fs/bpf/stockade/<instance>
  std::string machine;         // CPU, cores, kernel, load, steal
  std::string agent_error;     // why the agent's measure failed; empty if it did not
};

[[nodiscard]] absl::Status RunBench(const BenchOptions& options, Results& results, BenchRun& run);

}  // namespace stockade::bench

#endif  // STOCKADE_TOOLS_BENCH_RUNNER_H_

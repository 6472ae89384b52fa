// SPDX-License-Identifier: Apache-2.0
//
// A filter program's own time per packet, from the kernel's run-time
// statistics of BPF programs (BPF_ENABLE_STATS). The kernel times every run
// of every program while they are on, which costs each run some tens of ns
// on a VM, so stockade-bench turns them on only for a short measure of their
// own and never while it measures throughput or CPU.
#ifndef STOCKADE_TOOLS_BENCH_PROGRAM_RUNS_H_
#define STOCKADE_TOOLS_BENCH_PROGRAM_RUNS_H_

#include <cstdint>
#include <functional>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stockade/os/scoped_fd.h"

namespace stockade::bench {

// The statistics are on while an object lives (the kernel counts the holders).
class RunTimeStats {
 public:
  [[nodiscard]] static absl::StatusOr<RunTimeStats> Enable();

 private:
  explicit RunTimeStats(ScopedFd fd) : fd_(std::move(fd)) {}
  ScopedFd fd_;
};

struct ProgramRuns {
  uint64_t runs = 0;
  uint64_t run_time_ns = 0;
};

// The program's totals since it was loaded (zero while statistics were off).
[[nodiscard]] absl::StatusOr<ProgramRuns> ReadProgramRuns(int prog_fd);

// Mean ns per run of `prog_fd` while `traffic` runs with the statistics on;
// an error if `traffic` fails or the program did not run.
[[nodiscard]] absl::StatusOr<double> NsPerRun(int prog_fd, const std::function<absl::Status()>& traffic);

}  // namespace stockade::bench

#endif  // STOCKADE_TOOLS_BENCH_PROGRAM_RUNS_H_

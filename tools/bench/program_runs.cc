// SPDX-License-Identifier: Apache-2.0
#include "tools/bench/program_runs.h"

#include <bpf/bpf.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "stockade/os/errno_status.h"

namespace stockade::bench {

absl::StatusOr<RunTimeStats> RunTimeStats::Enable() {
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) return ErrnoStatus(errno, "enable BPF run-time statistics (BPF_ENABLE_STATS)");
  return RunTimeStats(ScopedFd(fd));
}

absl::StatusOr<ProgramRuns> ReadProgramRuns(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_prog_get_info_by_fd(prog_fd, &info, &len) != 0)
    return ErrnoStatus(errno, absl::StrCat("read the run-time statistics of BPF program fd ", prog_fd));
  return ProgramRuns{.runs = info.run_cnt, .run_time_ns = info.run_time_ns};
}

absl::StatusOr<double> NsPerRun(int prog_fd, const std::function<absl::Status()>& traffic) {
  auto stats = RunTimeStats::Enable();
  if (!stats.ok()) return stats.status();
  auto before = ReadProgramRuns(prog_fd);
  if (!before.ok()) return before.status();
  if (absl::Status s = traffic(); !s.ok()) return s;
  auto after = ReadProgramRuns(prog_fd);
  if (!after.ok()) return after.status();
  uint64_t runs = after->runs - before->runs;
  if (runs == 0) return absl::InternalError(absl::StrCat("BPF program fd ", prog_fd, " did not run during the measure"));
  return static_cast<double>(after->run_time_ns - before->run_time_ns) / runs;
}

}  // namespace stockade::bench

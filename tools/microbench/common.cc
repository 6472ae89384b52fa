// SPDX-License-Identifier: Apache-2.0
#include "tools/microbench/common.h"

#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <numeric>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "stockade/os/errno_status.h"

namespace stockade::microbench {

double Samples::Median() const {
  if (values_.empty()) return 0;
  std::vector<double> sorted = values_;
  std::sort(sorted.begin(), sorted.end());
  size_t mid = sorted.size() / 2;
  return sorted.size() % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

double Samples::Min() const { return values_.empty() ? 0 : *std::min_element(values_.begin(), values_.end()); }

double Samples::Max() const { return values_.empty() ? 0 : *std::max_element(values_.begin(), values_.end()); }

std::string Samples::Format(int decimals) const {
  return absl::StrFormat("%.*f (%.*f-%.*f)", decimals, Median(), decimals, Min(), decimals, Max());
}

std::vector<size_t> InterleavedOrder(size_t items, int round) {
  std::vector<size_t> order(items);
  std::iota(order.begin(), order.end(), 0);
  if (round % 2) std::reverse(order.begin(), order.end());
  return order;
}

std::string MachineInfo() {
  std::string cpu = "unknown";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (absl::StartsWith(line, "model name")) {
      cpu = std::string(absl::StripLeadingAsciiWhitespace(line.substr(line.find(':') + 1)));
      break;
    }
  }
  struct utsname uts {};
  uname(&uts);
  return absl::StrCat("CPU: ", cpu, "\ncores online: ", sysconf(_SC_NPROCESSORS_ONLN), "\nkernel: ", uts.sysname,
                      " ", uts.release, " ", uts.version, " ", uts.machine, "\n");
}

absl::Status PinToCpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) return ErrnoStatus(errno, absl::StrCat("pin to CPU ", cpu));
  return absl::OkStatus();
}

}  // namespace stockade::microbench

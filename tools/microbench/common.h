// SPDX-License-Identifier: Apache-2.0
//
// What both benchmarks of stockade-microbench share: repeated samples and
// their summary, the machine they ran on, and pinning to one CPU.
#ifndef STOCKADE_TOOLS_MICROBENCH_COMMON_H_
#define STOCKADE_TOOLS_MICROBENCH_COMMON_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace stockade::microbench {

// One number measured once per round.
class Samples {
 public:
  void Add(double value) { values_.push_back(value); }
  bool empty() const { return values_.empty(); }
  double Median() const;
  double Min() const;
  double Max() const;
  // "12.5 (12.1-13.0)" with the given number of decimals.
  std::string Format(int decimals) const;

 private:
  std::vector<double> values_;
};

// The order of the items of round `round`: forward, then backward (ABBA), so
// a drift over time weighs on every item alike.
std::vector<size_t> InterleavedOrder(size_t items, int round);

// "CPU: AMD EPYC ... | cores: 2 | kernel: 6.18.44 ...", one fact a line.
std::string MachineInfo();

// Keeps the calling thread on one CPU, so a run is not migrated mid-measurement.
[[nodiscard]] absl::Status PinToCpu(int cpu);

}  // namespace stockade::microbench

#endif  // STOCKADE_TOOLS_MICROBENCH_COMMON_H_

// SPDX-License-Identifier: Apache-2.0
#include "tools/bench/stats.h"

#include <algorithm>
#include <cmath>

namespace stockade::bench {

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  double rank = std::ceil(std::clamp(p, 0.0, 100.0) / 100.0 * values.size());
  size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return values[std::min(index, values.size() - 1)];
}

double Ratio(double value, double baseline) { return baseline > 0 ? value / baseline : 0; }

}  // namespace stockade::bench

// SPDX-License-Identifier: Apache-2.0
//
// The Prometheus text exposition format (version 0.0.4): one HELP and TYPE
// per family, then its samples. Label values are escaped; families must be
// written whole, one after the other. Pure logic.
#ifndef STOCKADE_INCLUDE_STOCKADE_METRICS_PROMETHEUS_TEXT_H_
#define STOCKADE_INCLUDE_STOCKADE_METRICS_PROMETHEUS_TEXT_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace stockade {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class PrometheusText {
 public:
  // type: "counter" or "gauge". Counter names end in _total.
  void Family(absl::string_view name, absl::string_view type, absl::string_view help);
  void Sample(absl::string_view name, const MetricLabels& labels, double value);
  void Sample(absl::string_view name, double value) { Sample(name, {}, value); }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_METRICS_PROMETHEUS_TEXT_H_

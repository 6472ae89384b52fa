// SPDX-License-Identifier: Apache-2.0
//
// The static endpoints file as a source of workloads.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_STATIC_ENDPOINTS_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_STATIC_ENDPOINTS_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "stockade/agent/workload.h"
#include "stockade/agent/workload_source.h"

namespace stockade {

// Static endpoints, for workloads that are not Docker containers:
//
//   endpoints:
//     - name: web
//       netns: /run/netns/web      # the workload's namespace
//       interface: eth0            # its interface there
//       hook: host-peer            # or in-container (macvlan-like)
//       ipv4: 10.0.0.2             # optional: read from the interface otherwise
//       ipv6: fd00::2              # optional
//       labels: {tier: web}        # identity labels, without the stockade. prefix
//
// Errors name the file, the line and the field.
[[nodiscard]] absl::StatusOr<std::vector<Workload>> ParseStaticEndpoints(const std::string& yaml_text,
                                                                         const std::string& file_name);
[[nodiscard]] absl::StatusOr<std::vector<Workload>> LoadStaticEndpoints(const std::string& path);


// The file, read again at each resync; a file that does not parse keeps
// the last good list.
class StaticEndpointsSource : public WorkloadSource {
 public:
  explicit StaticEndpointsSource(std::string path) : path_(std::move(path)) {}

  const char* name() const override { return "static endpoints"; }
  [[nodiscard]] absl::Status Resync() override;
  bool listed() const override { return listed_; }
  std::vector<Workload> Workloads() const override { return workloads_; }

 private:
  std::string path_;
  std::vector<Workload> workloads_;
  bool listed_ = false;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_STATIC_ENDPOINTS_H_

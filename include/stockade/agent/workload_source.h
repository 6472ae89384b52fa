// SPDX-License-Identifier: Apache-2.0
//
// What every source of workloads gives the agent's loop: Docker
// (docker_source.h), the static endpoints file (static_endpoints.h), and
// the next one. A source says what it knows now and reads it again when
// asked; the loop hands what all sources say to the Reconciler. A source
// never writes maps or calls back into the agent.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_WORKLOAD_SOURCE_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_WORKLOAD_SOURCE_H_

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "stockade/net/addresses.h"
#include "stockade/agent/workload.h"

namespace stockade {

class WorkloadSource {
 public:
  virtual ~WorkloadSource() = default;

  virtual const char* name() const = 0;  // "Docker", "static endpoints": for logs
  // Reads everything again. On failure the last good view stays.
  [[nodiscard]] virtual absl::Status Resync() = 0;
  // False until a Resync succeeded: before that a workload it does not
  // report is unknown, not gone, so the agent keeps what is pinned.
  virtual bool listed() const = 0;
  virtual std::vector<Workload> Workloads() const = 0;
  // Addresses that are the host, even where an endpoint claims them
  // (Docker's gateways).
  virtual std::vector<IpAddress> HostAddresses() const { return {}; }
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_WORKLOAD_SOURCE_H_

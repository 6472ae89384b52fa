// SPDX-License-Identifier: Apache-2.0
//
// One interface the agent hooks, and what it knows of it: what the
// reconciler makes of a workload's interface, and what `stockadectl endpoint
// list`, the metrics and the event context show.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_ENDPOINT_STATE_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_ENDPOINT_STATE_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "maps/abi.h"
#include "stockade/net/addresses.h"
#include "stockade/agent/hook_resolver.h"
#include "stockade/identity/labels.h"
#include "stockade/policy/policy_compiler.h"

namespace stockade {

// How an endpoint's error begins when its stockade.policy label did not
// parse: it is hooked and denies both ways, unlike the other errors.
inline constexpr char kLabelPolicyRejected[] = "stockade.policy label rejected: ";

struct EndpointState {
  std::string workload_id;
  std::string workload_name;
  std::string source;  // docker, static
  std::string network;
  std::string driver;
  ResolvedHook hook;
  std::optional<IpAddress> ipv4, ipv6;
  std::array<uint8_t, 6> mac{};
  uint32_t identity = IDENTITY_UNMANAGED;
  LabelSet labels;
  std::vector<IgnoredLabel> ignored_labels;
  EndpointPolicy policy;
  std::string error;  // why it is not enforced as wanted, if it is not
  // Shown only: a container that shares this owner's interface (its record is the owner's).
  std::string shares_network_of;
  // When the map sync that wrote its record, with this identity and policy,
  // returned: the end of its start-up window (scripts/enforcement-latency.sh).
  absl::Time enforced_at = absl::InfinitePast();

  // Its record is in the endpoints map: hooked, and either fine or denying
  // both ways for a rejected label policy.
  bool HasRecord() const { return hook.ifindex != 0 && (error.empty() || error.starts_with(kLabelPolicyRejected)); }
  // As `stockadectl endpoint list` and the metrics name it.
  const char* StateName() const {
    if (driver == "none") return "none";
    if (!error.empty()) return driver == "host" ? "host" : "error";
    return policy.enforce_ingress || policy.enforce_egress ? "enforcing" : "allow-all";
  }
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_ENDPOINT_STATE_H_

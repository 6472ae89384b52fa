// SPDX-License-Identifier: Apache-2.0
//
// Which events a subscriber wants. stockade-tail sends its filter to the
// agent, which applies it before anything is formatted or queued, so a
// narrow tail costs the agent nothing for the events it does not want.
// Within one field the values are alternatives; across fields all must match.
// Pure logic.
#ifndef STOCKADE_INCLUDE_STOCKADE_EVENTS_EVENT_FILTER_H_
#define STOCKADE_INCLUDE_STOCKADE_EVENTS_EVENT_FILTER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "stockade/events/event_record.h"

namespace stockade {

// A container by name, by id prefix (12 or more hex digits), or by labels
// ("tier=db", "tier=db,app=shop": all must match, as policy matchLabels).
struct WorkloadSelector {
  std::string name;
  LabelSet labels;  // used when not empty

  [[nodiscard]] static absl::StatusOr<WorkloadSelector> Parse(const std::string& text);
  bool Matches(const EventWorkload* workload) const;
  std::string ToString() const;
};

struct EventFilter {
  std::vector<WorkloadSelector> from;       // the source
  std::vector<WorkloadSelector> to;         // the destination
  std::vector<WorkloadSelector> container;  // either end
  std::vector<uint32_t> identities;         // either end's identity
  std::vector<int> reasons;                 // enum stockade_drop_reason
  // Empty: VERDICT_DROPPED and VERDICT_AUDIT, what the stream carried before
  // new-flow records, so a subscriber that names no verdict sees what it did;
  // VERDICT_FORWARDED only when asked for (stockade-tail --all-verdicts).
  std::vector<uint8_t> verdicts;
  std::vector<uint16_t> ports;              // either end's port
  std::vector<uint8_t> protocols;           // IPPROTO_*; 0 for ARP
  std::optional<uint8_t> direction;         // DIR_INGRESS or DIR_EGRESS

  bool Matches(const EventRecord& event) const;

  // The wire form in a subscribe request; FromJson says which field is wrong.
  nlohmann::json ToJson() const;
  [[nodiscard]] static absl::StatusOr<EventFilter> FromJson(const nlohmann::json& json);
};

// Names as operators type them; case does not matter.
[[nodiscard]] absl::StatusOr<int> ParseDropReason(const std::string& name);         // "policy_denied"
[[nodiscard]] absl::StatusOr<uint8_t> ParseVerdict(const std::string& name);        // "dropped", "audit", "forwarded"
[[nodiscard]] absl::StatusOr<uint8_t> ParseProtocol(const std::string& name);       // "tcp", "udp", "icmp", ...
[[nodiscard]] absl::StatusOr<uint8_t> ParseDirection(const std::string& name);      // "ingress", "egress"

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_EVENTS_EVENT_FILTER_H_

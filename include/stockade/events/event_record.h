// SPDX-License-Identifier: Apache-2.0
//
// A drop event as operators see it: the kernel's record (maps/events.h) plus
// what the agent knows of its two ends (container, labels, identity) and of
// the rule that decided it. The agent builds an EventContext after every
// reconcile; the event thread enriches with the snapshot it holds, so it never
// waits for the agent's lock. Pure logic.
#ifndef STOCKADE_INCLUDE_STOCKADE_EVENTS_EVENT_RECORD_H_
#define STOCKADE_INCLUDE_STOCKADE_EVENTS_EVENT_RECORD_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "stockade/net/addresses.h"
#include "stockade/identity/identity_allocator.h"
#include "stockade/identity/labels.h"
#include "maps/abi.h"

namespace stockade {

// One end of a flow that is a workload here.
struct EventWorkload {
  std::string container;  // its name (a static endpoint's name)
  std::string container_id;
  std::string network;
  std::string interface;  // the hooked interface, as `ip link` names it
  std::string host;       // another host's container: that host's id (the store's); empty: this host
  LabelSet labels;
  std::string labels_json;  // `labels` as a JSON object, escaped once here
};

// Strings by a 32-bit id (identities' labels, rules' origins) in shards that
// copies share: a context made after a reconcile that changed three rules
// copies the shards of those three, not the 100k strings of all of them.
class SharedStrings {
 public:
  // Copy on write: a shard that another copy holds is copied first.
  void Set(uint32_t id, std::string value);
  void Erase(uint32_t id);
  void Clear() { shards_ = {}; }
  const std::string* Find(uint32_t id) const;

 private:
  using Shard = std::map<uint32_t, std::string>;
  static constexpr size_t kShards = 256;
  Shard& Writable(uint32_t id);
  std::array<std::shared_ptr<Shard>, kShards> shards_;
};

// Copies share what they were copied with (SharedStrings): the agent keeps
// one context of identities and rules, changes only what changed, and
// publishes a copy of it with the workloads of the moment.
class EventContext {
 public:
  void AddWorkload(const IpAddress& address, EventWorkload workload);
  void AddIdentityLabels(uint32_t identity, const LabelSet& labels);
  // A CIDR identity's labels, {"cidr": prefix}: without a JSON tree each,
  // which for 100k of them was most of an agent's start after its first sync.
  void AddCidrIdentity(uint32_t identity, const IpPrefix& prefix);
  void ClearIdentityLabels() {
    identity_labels_json_.Clear();
    identities_followed_.reset();
    identities_rebuild_.reset();
  }
  // Brings the identities' labels (and the reserved identities') to the
  // allocator's `table`. Ids are never handed out twice, so a table that
  // only grew since the one followed last costs its new ids (and a walk over
  // the ids, no text made), not the 100k labels of all of them; a table that
  // lost one is followed from scratch. From scratch, `pause` is asked every
  // kFollowChunk CIDRs: when it says so, this returns false and the next
  // call goes on from there (with the table as it is then).
  static constexpr size_t kFollowChunk = 8192;
  bool FollowIdentities(const IdentityTable& table, const std::function<bool()>& pause = {});
  void AddRule(uint32_t rule_id, std::string origin);
  void RemoveRule(uint32_t rule_id) { rules_.Erase(rule_id); }
  void ClearRules() { rules_.Clear(); }

  const EventWorkload* WorkloadAt(uint8_t family, const uint8_t address[16]) const;
  // The labels of an identity that is not (or not only) a workload here (CIDR and
  // reserved identities) as a JSON object, made once; "{}" for an unknown identity.
  const std::string& IdentityLabelsJson(uint32_t identity) const;
  // "db-ingress ingress[0] (policies/db.yaml:9)"; empty for an unknown id.
  const std::string* RuleOrigin(uint32_t rule_id) const;

 private:
  using AddressKey = std::array<uint8_t, 17>;  // family + 16 bytes: no allocation to look one up
  absl::flat_hash_map<AddressKey, std::shared_ptr<const EventWorkload>> by_address_;
  SharedStrings identity_labels_json_;
  struct FollowedTable {
    uint32_t next_id = 0;
    size_t identities = 0;  // labels and CIDRs
  };
  std::optional<FollowedTable> identities_followed_;  // what identity_labels_json_ holds
  struct Rebuild {
    FollowedTable from;  // the table when it began: what came later is added as growth after it
    std::optional<IpPrefix> next_cidr;  // where it paused
  };
  std::optional<Rebuild> identities_rebuild_;
  SharedStrings rules_;
};

// A drop_event with its ends resolved.
struct EventRecord {
  drop_event raw{};
  int64_t time_ns = 0;  // realtime, nanoseconds since the epoch
  std::shared_ptr<const EventContext> context;  // null: nothing known

  const EventWorkload* source() const;
  const EventWorkload* destination() const;
  uint32_t source_identity() const;
  uint32_t destination_identity() const;
  uint16_t source_port() const;       // host order; 0 for ICMP and ARP
  uint16_t destination_port() const;  // host order; 0 for ICMP and ARP
  // "db-ingress ingress[0] (policies/db.yaml:9)", "default deny" or "".
  std::string Rule() const;
};

std::string_view VerdictName(uint8_t verdict);      // "DROPPED", "AUDIT", "FORWARDED"
std::string_view DirectionName(uint8_t direction);  // "ingress", "egress"
std::string ProtocolName(uint8_t protocol);          // "tcp", "udp", "icmp", "icmpv6", "arp", "proto 47"
// "2026-11-26T10:51:17.123456789Z".
std::string FormatRfc3339Nanos(int64_t unix_ns);

// One JSON object, no newline. The order of the first fields is fixed
// ("type", "time", "verdict", "reason", "count"), so a reader may find them
// without parsing; docs/events.md has the schema.
void AppendEventJson(const EventRecord& event, std::string& out);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_EVENTS_EVENT_RECORD_H_

// SPDX-License-Identifier: Apache-2.0
//
// The flows the datapath tracks, kept in two maps (maps/conntrack.h): IPv4
// in conntrack4, whose key hashes in half the time, every other family in
// conntrack. Callers see one table of struct ct_key: an IPv4 key is narrowed
// on its way in and widened on its way out. An entry read here includes the
// packets and bytes that flow_cache slots passed and have not yet moved into
// it (maps/flow_cache.h).
#ifndef STOCKADE_INCLUDE_STOCKADE_CONNTRACK_CONNTRACK_H_
#define STOCKADE_INCLUDE_STOCKADE_CONNTRACK_CONNTRACK_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "maps/abi.h"
#include "stockade/datapath/typed_map.h"

namespace stockade {

using ConntrackMap = TypedMap<ct_key, ct_entry>;
using Conntrack4Map = TypedMap<ct4_key, ct_entry>;
using FlowCacheMap = PerCpuArray<flow_cache_slot>;

// The key of an IPv4 flow (family STOCKADE_AF_INET) in conntrack4, and back.
[[nodiscard]] ct4_key NarrowConntrackKey(const ct_key& key);
[[nodiscard]] ct_key WidenConntrackKey(const ct4_key& key);

class Conntrack {
 public:
  Conntrack(ConntrackMap wide, Conntrack4Map ipv4, FlowCacheMap flow_cache)
      : wide_(std::move(wide)), ipv4_(std::move(ipv4)), flow_cache_(std::move(flow_cache)) {}

  [[nodiscard]] absl::StatusOr<std::optional<ct_entry>> Lookup(const ct_key& key) const;
  [[nodiscard]] absl::Status Update(const ct_key& key, const ct_entry& entry);
  // Both maps; entries added or removed meanwhile may or may not be seen, and
  // a packet counted meanwhile may be in an entry's counts or not.
  [[nodiscard]] absl::Status ForEach(const std::function<void(const ct_key&, const ct_entry&)>& fn) const;
  [[nodiscard]] absl::StatusOr<size_t> Count() const;
  // Both maps and every flow_cache slot.
  [[nodiscard]] absl::Status Clear();

  // Moves the IPv4 flows that a version before conntrack4 kept in conntrack
  // into conntrack4, so that an upgrade keeps them established; returns how
  // many moved. A flow the old programs add after this runs is decided again
  // by its next packet, so the agent runs it once more after it has put the
  // new programs in place.
  [[nodiscard]] absl::StatusOr<size_t> MoveIpv4FlowsFromWideMap();

  // The maps themselves, for their counts and capacities.
  const ConntrackMap& wide_map() const { return wide_; }
  const Conntrack4Map& ipv4_map() const { return ipv4_; }
  const FlowCacheMap& flow_cache_map() const { return flow_cache_; }

 private:
  struct Pending {
    uint64_t packets = 0;
    uint64_t bytes = 0;
    uint8_t tcp_flags_seen = 0;
  };
  // What the slots of every CPU counted and have not moved into an entry, by conntrack4 key.
  [[nodiscard]] absl::StatusOr<absl::flat_hash_map<std::string, Pending>> PendingInFlowCache() const;
  static void AddPending(const Pending& pending, ct_entry& entry);

  ConntrackMap wide_;
  Conntrack4Map ipv4_;
  FlowCacheMap flow_cache_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_CONNTRACK_CONNTRACK_H_

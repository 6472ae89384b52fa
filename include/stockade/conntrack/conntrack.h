// SPDX-License-Identifier: Apache-2.0
//
// The flows the datapath tracks, kept in two maps (maps/conntrack.h): IPv4
// in conntrack4, whose key hashes in half the time, every other family in
// conntrack. Callers see one table of struct ct_key: an IPv4 key is narrowed
// on its way in and widened on its way out.
#ifndef STOCKADE_INCLUDE_STOCKADE_CONNTRACK_CONNTRACK_H_
#define STOCKADE_INCLUDE_STOCKADE_CONNTRACK_CONNTRACK_H_

#include <cstddef>
#include <functional>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "maps/abi.h"
#include "stockade/typed_map.h"

namespace stockade {

using ConntrackMap = TypedMap<ct_key, ct_entry>;
using Conntrack4Map = TypedMap<ct4_key, ct_entry>;

// The key of an IPv4 flow (family STOCKADE_AF_INET) in conntrack4, and back.
[[nodiscard]] ct4_key NarrowConntrackKey(const ct_key& key);
[[nodiscard]] ct_key WidenConntrackKey(const ct4_key& key);

class Conntrack {
 public:
  Conntrack(ConntrackMap wide, Conntrack4Map ipv4) : wide_(std::move(wide)), ipv4_(std::move(ipv4)) {}

  [[nodiscard]] absl::StatusOr<std::optional<ct_entry>> Lookup(const ct_key& key) const;
  [[nodiscard]] absl::Status Update(const ct_key& key, const ct_entry& entry);
  // Both maps; entries added or removed meanwhile may or may not be seen.
  [[nodiscard]] absl::Status ForEach(const std::function<void(const ct_key&, const ct_entry&)>& fn) const;
  [[nodiscard]] absl::StatusOr<size_t> Count() const;
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

 private:
  ConntrackMap wide_;
  Conntrack4Map ipv4_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_CONNTRACK_CONNTRACK_H_

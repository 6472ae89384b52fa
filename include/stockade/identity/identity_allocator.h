// SPDX-License-Identifier: Apache-2.0
//
// Numeric identities for label sets and CIDR prefixes. The same label set
// keeps its identity across agent restarts: the agent saves the table
// (SerializeIdentityTable) and starts the next allocator from it. New ids
// count up from STOCKADE_IDENTITY_FIRST_ALLOCATED and are never handed out
// twice, even after Release: conntrack entries and events may still carry an
// old id, and it must not come to mean other containers. Pure logic.
#ifndef STOCKADE_INCLUDE_STOCKADE_IDENTITY_IDENTITY_ALLOCATOR_H_
#define STOCKADE_INCLUDE_STOCKADE_IDENTITY_IDENTITY_ALLOCATOR_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stockade/net/addresses.h"
#include "stockade/identity/labels.h"

namespace stockade {

// Orders prefixes by family, address, then length.
struct IpPrefixLess {
  bool operator()(const IpPrefix& a, const IpPrefix& b) const;
};

// Everything the allocator remembers, as saved between runs.
struct IdentityTable {
  // Above every id ever allocated, live or released.
  uint32_t next_id = STOCKADE_IDENTITY_FIRST_ALLOCATED;
  std::map<LabelSet, uint32_t> labels;  // never the empty set: that is IDENTITY_UNMANAGED
  std::map<IpPrefix, uint32_t, IpPrefixLess> cidrs;
  bool operator==(const IdentityTable&) const = default;
};

// Checks what the allocator relies on: allocated-range ids, each used once,
// next_id above all of them, no empty label set.
[[nodiscard]] absl::Status ValidateIdentityTable(const IdentityTable& table);

// The table as JSON, for the agent's state file; ParseIdentityTable reads it
// back (validated), with errors naming the bad member.
std::string SerializeIdentityTable(const IdentityTable& table);
[[nodiscard]] absl::StatusOr<IdentityTable> ParseIdentityTable(absl::string_view json);

class IdentityAllocator {
 public:
  IdentityAllocator() = default;
  // Continues from a saved table.
  [[nodiscard]] static absl::StatusOr<IdentityAllocator> FromTable(IdentityTable table);

  // The identity of a container's identity labels: the one it had, or a new
  // one. No labels: IDENTITY_UNMANAGED. Fails only when ids run out.
  [[nodiscard]] absl::StatusOr<uint32_t> ForLabels(const LabelSet& labels);
  // The identity of the addresses a policy names by CIDR.
  [[nodiscard]] absl::StatusOr<uint32_t> ForCidr(const IpPrefix& prefix);
  // Forgets an identity that nothing uses any more; its id stays retired.
  void Release(uint32_t id);

  const IdentityTable& table() const { return table_; }

 private:
  explicit IdentityAllocator(IdentityTable table) : table_(std::move(table)) {}
  absl::StatusOr<uint32_t> Next();

  IdentityTable table_;
};

// The reserved identities an address can have, as listings show them.
inline constexpr uint32_t kReservedIdentities[] = {IDENTITY_HOST, IDENTITY_REMOTE_HOST, IDENTITY_WORLD,
                                                   IDENTITY_UNMANAGED};

// "host", "remote-host", "world", "unmanaged", "any" for the reserved identities, else the number.
std::string FormatIdentity(uint32_t identity);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_IDENTITY_IDENTITY_ALLOCATOR_H_

// SPDX-License-Identifier: Apache-2.0
//
// From rules to policy map entries. A rule names one local identity, one
// remote identity (or any), a direction, a protocol (or any) and a port range;
// its entries are LPM prefixes over the port, at most 30 of them for any
// range. Deny wins: every entry is written with the deny of any wider entry
// for the same identities folded in, since the trie returns only the most
// specific match. Pure logic, no syscalls.
#ifndef STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_ENTRIES_H_
#define STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_ENTRIES_H_

#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "maps/abi.h"

namespace stockade {

struct PortRange {
  uint16_t first = 0;
  uint16_t last = 65535;
  bool operator==(const PortRange&) const = default;
  bool IsAny() const { return first == 0 && last == 65535; }
};

// One port prefix: the ports whose top `bits` bits equal those of `port`.
struct PortPrefix {
  uint16_t port = 0;  // host order
  uint8_t bits = 0;   // 0 (any port) to 16 (exactly one)
  bool operator==(const PortPrefix&) const = default;
};

// The fewest prefixes that cover [first, last] exactly.
std::vector<PortPrefix> PortRangeToPrefixes(PortRange range);

struct DatapathRule {
  uint32_t rule_id = 0;
  uint32_t local_identity = 0;
  uint32_t remote_identity = IDENTITY_ANY;
  uint8_t direction = DIR_INGRESS;
  uint8_t protocol = 0;  // 0: any protocol
  PortRange ports;
  uint8_t action = POLICY_ACTION_ALLOW;
  bool audit = false;  // a deny, or a TLS requirement, that only reports
  bool require_tls = false;  // TCP allows only (POLICY_F_REQUIRE_TLS)
};

struct PolicyEntry {
  policy_key key;
  policy_value value;
};

// Map keys and values compared and hashed by their bytes: the ABI structs
// have explicit padding, always zeroed.
template <typename T>
struct ByteHash {
  size_t operator()(const T& v) const {
    return absl::Hash<absl::string_view>{}(absl::string_view(reinterpret_cast<const char*>(&v), sizeof(T)));
  }
};
template <typename T>
struct ByteEq {
  bool operator()(const T& a, const T& b) const { return std::memcmp(&a, &b, sizeof(T)) == 0; }
};

// What the policy maps hold, by key.
using PolicyEntryMap = absl::flat_hash_map<policy_key, policy_value, ByteHash<policy_key>, ByteEq<policy_key>>;

// What a sync must change to bring `now` to `wanted`, in the order it must
// be done: denies first (a missing deny is never filled by a wider allow),
// then allows, and stale keys last. With a `scope`, `wanted` holds only the
// wanted entries among the scope's keys (no duplicates), and only those keys
// can be stale: the rest of `now` is taken to be as wanted.
struct PolicyEntryDiff {
  std::vector<PolicyEntry> denies;  // new or changed
  std::vector<PolicyEntry> allows;  // new or changed
  std::vector<policy_key> stale;    // in `now`, not wanted
  size_t size() const { return denies.size() + allows.size() + stale.size(); }
};
[[nodiscard]] PolicyEntryDiff DiffPolicyEntries(const PolicyEntryMap& now, const std::vector<PolicyEntry>& wanted,
                                                const std::vector<policy_key>* scope = nullptr);

// Whether a rule can become entries: what CompilePolicyEntries refuses.
[[nodiscard]] absl::Status CheckDatapathRule(const DatapathRule& rule);

// Entries for a set of rules, deny folded in, one per key. A port range with
// protocol 'any' applies to TCP, UDP and SCTP, the protocols with ports.
[[nodiscard]] absl::StatusOr<std::vector<PolicyEntry>> CompilePolicyEntries(const std::vector<DatapathRule>& rules);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_ENTRIES_H_

// SPDX-License-Identifier: Apache-2.0
#include "stockade/policy/policy_entries.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace stockade {
namespace {

// The part of a key an entry matches on, in the trie's bit order.
struct EntryId {
  uint32_t local, remote;
  uint8_t direction, protocol;
  uint16_t port;  // host order
  uint32_t prefixlen;
  bool operator==(const EntryId&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const EntryId& e) {
    return H::combine(std::move(h), e.local, e.remote, e.direction, e.protocol, e.port, e.prefixlen);
  }
};

EntryId Masked(EntryId id, uint32_t prefixlen) {
  id.prefixlen = prefixlen;
  if (prefixlen < POLICY_PREFIX_ANY_PORT) id.protocol = 0;
  uint32_t port_bits = prefixlen > POLICY_PREFIX_ANY_PORT ? prefixlen - POLICY_PREFIX_ANY_PORT : 0;
  id.port = port_bits == 0 ? 0 : static_cast<uint16_t>(id.port & (0xffff << (16 - port_bits)));
  return id;
}

policy_key ToKey(const EntryId& id) {
  policy_key key{};
  key.prefixlen = id.prefixlen;
  key.local_identity = id.local;
  key.remote_identity = id.remote;
  key.direction = id.direction;
  key.protocol = id.protocol;
  key.dport = htons(id.port);
  return key;
}

// Deny beats allow; an enforcing deny beats an audit-only one. Among allows,
// the strict one wins: requireTLS beats plaintext, enforcing beats audit-only.
std::pair<int, int> Strictness(const policy_value& v) {
  const int audit = (v.flags & POLICY_F_AUDIT) ? 1 : 2;
  if (v.action == POLICY_ACTION_DENY) return {audit, 0};
  return {0, (v.flags & POLICY_F_REQUIRE_TLS) ? audit : 0};
}

// The stricter value; then the lower rule id.
bool Stronger(const policy_value& a, const policy_value& b) {
  return std::make_tuple(Strictness(a), -static_cast<int64_t>(a.rule_id)) >
         std::make_tuple(Strictness(b), -static_cast<int64_t>(b.rule_id));
}

// Whether a wider entry binds a narrower one: a deny, or a stricter TLS
// requirement, of a wider entry holds for the ports inside it, so a narrower
// plaintext allow never opens what a wider rule closes or requires TLS for.
bool Binds(const policy_value& wider, const policy_value& narrower) {
  if (wider.action == POLICY_ACTION_DENY) return Stronger(wider, narrower);
  return (wider.flags & POLICY_F_REQUIRE_TLS) && Strictness(wider) > Strictness(narrower);
}

}  // namespace

std::vector<PortPrefix> PortRangeToPrefixes(PortRange range) {
  std::vector<PortPrefix> out;
  uint32_t first = range.first, last = range.last;
  while (first <= last) {
    // The largest aligned block that starts at `first` and stays within `last`.
    int bits = 16;
    while (bits > 0) {
      uint32_t size = 1u << (16 - bits + 1);
      if ((first & (size - 1)) != 0 || first + size - 1 > last) break;
      --bits;
    }
    out.push_back({static_cast<uint16_t>(first), static_cast<uint8_t>(bits)});
    first += 1u << (16 - bits);
  }
  return out;
}

absl::Status CheckDatapathRule(const DatapathRule& rule) {
  if (rule.ports.first > rule.ports.last)
    return absl::InvalidArgumentError(
        absl::StrCat("rule ", rule.rule_id, ": port range ", rule.ports.first, "-", rule.ports.last, " is empty"));
  if (rule.direction >= DIR_MAX)
    return absl::InvalidArgumentError(absl::StrCat("rule ", rule.rule_id, ": bad direction"));
  if (rule.action != POLICY_ACTION_ALLOW && rule.action != POLICY_ACTION_DENY)
    return absl::InvalidArgumentError(absl::StrCat("rule ", rule.rule_id, ": bad action"));
  if (rule.local_identity == IDENTITY_ANY)
    return absl::InvalidArgumentError(absl::StrCat("rule ", rule.rule_id, ": local identity must be set"));
  if (rule.require_tls && (rule.action != POLICY_ACTION_ALLOW || rule.protocol != IPPROTO_TCP))
    return absl::InvalidArgumentError(absl::StrCat("rule ", rule.rule_id, ": requireTLS needs a TCP allow"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<PolicyEntry>> CompilePolicyEntries(const std::vector<DatapathRule>& rules) {
  absl::flat_hash_map<EntryId, policy_value> entries;
  for (const DatapathRule& rule : rules) {
    if (absl::Status s = CheckDatapathRule(rule); !s.ok()) return s;

    std::vector<uint8_t> protocols = {rule.protocol};
    if (rule.protocol == 0 && !rule.ports.IsAny()) protocols = {IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP};
    policy_value value{};
    value.rule_id = rule.rule_id;
    value.action = rule.action;
    value.flags = (rule.audit && (rule.action == POLICY_ACTION_DENY || rule.require_tls) ? POLICY_F_AUDIT : 0) |
                  (rule.protocol != 0 ? POLICY_F_EXPLICIT_PROTOCOL : 0) |
                  (rule.require_tls ? POLICY_F_REQUIRE_TLS : 0);

    for (uint8_t protocol : protocols) {
      EntryId base{rule.local_identity, rule.remote_identity, rule.direction, protocol, 0, 0};
      std::vector<PortPrefix> prefixes =
          protocol == 0 ? std::vector<PortPrefix>{{0, 0}} : PortRangeToPrefixes(rule.ports);
      for (const PortPrefix& p : prefixes) {
        EntryId id = base;
        id.port = p.port;
        id.prefixlen = protocol == 0 ? POLICY_PREFIX_ANY_PROTOCOL : POLICY_PREFIX_ANY_PORT + p.bits;
        auto [it, inserted] = entries.try_emplace(id, value);
        if (!inserted && Stronger(value, it->second)) it->second = value;
      }
    }
  }

  // Fold in the deny and the TLS requirement of every wider entry: the trie
  // will only ever return the narrowest.
  std::vector<PolicyEntry> out;
  out.reserve(entries.size());
  for (const auto& [id, value] : entries) {
    policy_value effective = value;
    for (uint32_t len = POLICY_PREFIX_ANY_PROTOCOL; len < id.prefixlen; ++len) {
      if (len > POLICY_PREFIX_ANY_PROTOCOL && len < POLICY_PREFIX_ANY_PORT) continue;
      auto wider = entries.find(Masked(id, len));
      if (wider != entries.end() && Binds(wider->second, effective))
        effective = wider->second;
    }
    // The protocol is explicit only if this entry itself named it.
    effective.flags = (effective.flags & ~POLICY_F_EXPLICIT_PROTOCOL) | (value.flags & POLICY_F_EXPLICIT_PROTOCOL);
    out.push_back({ToKey(id), effective});
  }
  std::sort(out.begin(), out.end(), [](const PolicyEntry& a, const PolicyEntry& b) {
    return std::memcmp(&a.key, &b.key, sizeof(policy_key)) < 0;
  });
  return out;
}

PolicyEntryDiff DiffPolicyEntries(const PolicyEntryMap& now, const std::vector<PolicyEntry>& wanted,
                                  const std::vector<policy_key>* scope) {
  PolicyEntryDiff diff;
  absl::flat_hash_set<policy_key, ByteHash<policy_key>, ByteEq<policy_key>> wanted_keys;
  wanted_keys.reserve(wanted.size());
  for (const PolicyEntry& e : wanted) {
    wanted_keys.insert(e.key);
    auto it = now.find(e.key);
    if (it != now.end() && ByteEq<policy_value>{}(it->second, e.value)) continue;
    (e.value.action == POLICY_ACTION_DENY ? diff.denies : diff.allows).push_back(e);
  }
  if (scope == nullptr) {
    for (const auto& [key, value] : now)
      if (!wanted_keys.contains(key)) diff.stale.push_back(key);
    return diff;
  }
  for (const policy_key& key : *scope)
    if (!wanted_keys.contains(key) && now.contains(key)) diff.stale.push_back(key);
  return diff;
}

}  // namespace stockade

// SPDX-License-Identifier: Apache-2.0
#include "stockade/identity/identity_allocator.h"

#include <limits>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace stockade {

bool IpPrefixLess::operator()(const IpPrefix& a, const IpPrefix& b) const {
  return std::tie(a.address.family, a.address.bytes, a.length) < std::tie(b.address.family, b.address.bytes, b.length);
}

absl::Status ValidateIdentityTable(const IdentityTable& table) {
  absl::flat_hash_map<uint32_t, std::string> owners;
  auto claim = [&](uint32_t id, std::string owner) -> absl::Status {
    if (id < STOCKADE_IDENTITY_FIRST_ALLOCATED)
      return absl::InvalidArgumentError(absl::StrCat(owner, ": id ", id, " is reserved (allocated ids start at ",
                                                     STOCKADE_IDENTITY_FIRST_ALLOCATED, ")"));
    if (id >= table.next_id)
      return absl::InvalidArgumentError(absl::StrCat(owner, ": id ", id, " is not below next_id ", table.next_id));
    auto [it, inserted] = owners.try_emplace(id, owner);
    if (!inserted)
      return absl::InvalidArgumentError(absl::StrCat("id ", id, " is used by both ", it->second, " and ", owner));
    return absl::OkStatus();
  };
  if (table.next_id < STOCKADE_IDENTITY_FIRST_ALLOCATED)
    return absl::InvalidArgumentError(absl::StrCat("next_id ", table.next_id, " is in the reserved range"));
  for (const auto& [labels, id] : table.labels) {
    if (labels.empty())
      return absl::InvalidArgumentError(
          absl::StrCat("id ", id, ": the empty label set is IDENTITY_UNMANAGED, never allocated"));
    if (absl::Status s = claim(id, absl::StrCat("labels ", FormatLabels(labels))); !s.ok()) return s;
  }
  for (const auto& [prefix, id] : table.cidrs)
    if (absl::Status s = claim(id, absl::StrCat("cidr ", prefix.ToString())); !s.ok()) return s;
  return absl::OkStatus();
}

absl::StatusOr<IdentityAllocator> IdentityAllocator::FromTable(IdentityTable table) {
  if (absl::Status s = ValidateIdentityTable(table); !s.ok()) return s;
  return IdentityAllocator(std::move(table));
}

absl::StatusOr<uint32_t> IdentityAllocator::Next() {
  if (table_.next_id == std::numeric_limits<uint32_t>::max())
    return absl::ResourceExhaustedError("identity ids exhausted");
  return table_.next_id++;
}

absl::StatusOr<uint32_t> IdentityAllocator::ForLabels(const LabelSet& labels) {
  if (labels.empty()) return IDENTITY_UNMANAGED;
  if (auto found = table_.labels.find(labels); found != table_.labels.end()) return found->second;
  absl::StatusOr<uint32_t> id = Next();
  if (id.ok()) table_.labels.emplace(labels, *id);
  return id;
}

absl::StatusOr<uint32_t> IdentityAllocator::ForCidr(const IpPrefix& prefix) {
  if (auto found = table_.cidrs.find(prefix); found != table_.cidrs.end()) return found->second;
  absl::StatusOr<uint32_t> id = Next();
  if (id.ok()) table_.cidrs.emplace(prefix, *id);
  return id;
}

void IdentityAllocator::Release(uint32_t id) {
  std::erase_if(table_.labels, [id](const auto& entry) { return entry.second == id; });
  std::erase_if(table_.cidrs, [id](const auto& entry) { return entry.second == id; });
}

std::string FormatIdentity(uint32_t identity) {
  switch (identity) {
    case IDENTITY_ANY:
      return "any";
    case IDENTITY_HOST:
      return "host";
    case IDENTITY_REMOTE_HOST:
      return "remote-host";
    case IDENTITY_WORLD:
      return "world";
    case IDENTITY_UNMANAGED:
      return "unmanaged";
    default:
      return absl::StrCat(identity);
  }
}

}  // namespace stockade

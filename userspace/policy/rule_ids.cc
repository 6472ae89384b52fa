// SPDX-License-Identifier: Apache-2.0
#include "userspace/policy/rule_ids.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace stockade {
namespace {

// FNV-1a, 32 bits: small, and the same on every build.
uint32_t Fnv1a(absl::string_view text) {
  uint32_t hash = 2166136261u;
  for (char c : text) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 16777619u;
  }
  return hash;
}

}  // namespace

RuleIds::RuleIds(const std::vector<const Policy*>& policies) {
  std::vector<const Policy*> by_name = policies;
  std::sort(by_name.begin(), by_name.end(), [](const Policy* a, const Policy* b) { return a->name < b->name; });
  // Taken ids in a hash set and origins sorted once at the end: a std::map
  // probed and filled in hash order missed the cache at every level, which
  // at 100k rules was a fifth of the compile.
  absl::flat_hash_set<uint32_t> taken;
  std::vector<std::pair<uint32_t, RuleOrigin>> origins;
  std::string key;
  for (const Policy* policy : by_name) {
    for (RuleSection section : kRuleSections) {
      if (!policy->section(section)) continue;
      const std::vector<PolicyRule>& rules = *policy->section(section);
      for (size_t i = 0; i < rules.size(); ++i) {
        key.clear();
        absl::StrAppend(&key, policy->name, "/", RuleSectionName(section), "/", i);
        uint32_t id = Fnv1a(key);
        while (id == 0 || !taken.insert(id).second) ++id;
        ids_[{policy, section, i}] = id;
        origins.push_back({id, RuleOrigin{policy->name, section, i, rules[i].location}});
      }
    }
  }
  std::sort(origins.begin(), origins.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [id, origin] : origins) origins_.emplace_hint(origins_.end(), id, std::move(origin));
}

uint32_t RuleIds::Id(const Policy& policy, RuleSection section, size_t index) const {
  return ids_.at({&policy, section, index});
}

}  // namespace stockade

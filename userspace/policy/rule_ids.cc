// SPDX-License-Identifier: Apache-2.0
#include "userspace/policy/rule_ids.h"

#include <algorithm>

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
  for (const Policy* policy : by_name) {
    for (RuleSection section : kRuleSections) {
      if (!policy->section(section)) continue;
      const std::vector<PolicyRule>& rules = *policy->section(section);
      for (size_t i = 0; i < rules.size(); ++i) {
        const std::string key = absl::StrCat(policy->name, "/", RuleSectionName(section), "/", i);
        uint32_t id = Fnv1a(key);
        while (id == 0 || origins_.contains(id)) ++id;
        ids_[{policy, section, i}] = id;
        origins_[id] = RuleOrigin{policy->name, section, i, rules[i].location};
      }
    }
  }
}

uint32_t RuleIds::Id(const Policy& policy, RuleSection section, size_t index) const {
  return ids_.at({&policy, section, index});
}

}  // namespace stockade

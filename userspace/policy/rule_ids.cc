// SPDX-License-Identifier: Apache-2.0
#include "userspace/policy/rule_ids.h"

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

std::vector<uint32_t> WantedRuleIds(const Policy& policy) {
  std::vector<uint32_t> out;
  std::string key;
  for (RuleSection section : kRuleSections) {
    if (!policy.section(section)) continue;
    for (size_t i = 0; i < policy.section(section)->size(); ++i) {
      key.clear();
      absl::StrAppend(&key, policy.name, "/", RuleSectionName(section), "/", i);
      out.push_back(Fnv1a(key));
    }
  }
  return out;
}

uint32_t TakeRuleId(uint32_t wanted, absl::flat_hash_set<uint32_t>& taken) {
  uint32_t id = wanted;
  while (id == 0 || !taken.insert(id).second) ++id;
  return id;
}

}  // namespace stockade

// SPDX-License-Identifier: Apache-2.0
//
// Rule ids, the number a drop event carries to name the rule that decided.
// An id is a hash of (policy name, section, index), so a rule keeps its id
// across agent restarts and edits of other policies: an event read just
// after a reload still names the right rule. 0 means "no rule" and is never
// used; on a collision the later rule in name order takes the next free id.
#ifndef STOCKADE_USERSPACE_POLICY_RULE_IDS_H_
#define STOCKADE_USERSPACE_POLICY_RULE_IDS_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "stockade/policy/policy.h"

namespace stockade {

// The id each rule of `policy` wants, sections in kRuleSections order: a
// pure function of the policy's name and its rules' places, so a compile
// cache keeps it with the policy.
std::vector<uint32_t> WantedRuleIds(const Policy& policy);

// The id a rule gets: the one it wants, or on a collision with a rule taken
// before it (policies are taken in name order) the next free one.
uint32_t TakeRuleId(uint32_t wanted, absl::flat_hash_set<uint32_t>& taken);

}  // namespace stockade

#endif  // STOCKADE_USERSPACE_POLICY_RULE_IDS_H_

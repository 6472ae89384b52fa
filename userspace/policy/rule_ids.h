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
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "stockade/policy/policy.h"
#include "stockade/policy/policy_compiler.h"

namespace stockade {

class RuleIds {
 public:
  // Ids for every rule of `policies`, whose names are unique. Id() takes
  // the same Policy objects, which must outlive this.
  explicit RuleIds(const std::vector<const Policy*>& policies);

  uint32_t Id(const Policy& policy, RuleSection section, size_t index) const;
  const std::map<uint32_t, RuleOrigin>& origins() const { return origins_; }

 private:
  // Keyed by the policy's address, not its name: Id() runs once per emitted
  // rule, and a name in the key copied a string each time.
  absl::flat_hash_map<std::tuple<const Policy*, RuleSection, size_t>, uint32_t> ids_;
  std::map<uint32_t, RuleOrigin> origins_;
};

}  // namespace stockade

#endif  // STOCKADE_USERSPACE_POLICY_RULE_IDS_H_

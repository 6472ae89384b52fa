// SPDX-License-Identifier: Apache-2.0
//
// Policy files and stockade.policy labels to the policy model. Strict: an
// unknown key, a bad value or a duplicate name rejects the whole text with
// "<source>:<line>: <path>: <reason>", since a typo must never silently open
// or cut the network; nothing of a rejected text is used. Pure logic, except
// ValidatePolicyFile which reads the file.
#ifndef STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_PARSER_H_
#define STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_PARSER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stockade/policy/policy.h"

namespace stockade {

// Every policy of a YAML text of one or more documents; `source` names the
// text in errors and rule locations, e.g. "policies/db.yaml".
[[nodiscard]] absl::StatusOr<std::vector<Policy>> ParsePolicyText(absl::string_view text, absl::string_view source);

// A container's stockade.policy label: a spec (YAML or JSON) without
// endpointSelector, named "container/<container_name>".
[[nodiscard]] absl::StatusOr<Policy> ParseLabelPolicy(absl::string_view text, absl::string_view container_name);

// A policy file's text; the error names the file.
[[nodiscard]] absl::StatusOr<std::string> ReadPolicyFile(const std::string& path);
// Reads a policy file and parses it (stockadectl policy validate).
[[nodiscard]] absl::StatusOr<std::vector<Policy>> ValidatePolicyFile(const std::string& path);

// Policy names identify rules in drop events: they must be unique across files.
[[nodiscard]] absl::Status CheckUniquePolicyNames(const std::vector<Policy>& policies);
// The same over policies held elsewhere (no copies of their rules).
[[nodiscard]] absl::Status CheckUniquePolicyNames(const std::vector<const Policy*>& policies);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_PARSER_H_

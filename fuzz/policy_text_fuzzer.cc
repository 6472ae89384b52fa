// SPDX-License-Identifier: Apache-2.0
//
// Policy files (stockadectl policy validate, the agent's --policy-dir): any
// text is parsed into policies or refused with "<file>:<line>: ...", never a
// crash, and nothing of a refused text is used.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "fuzz/fuzz_check.h"
#include "stockade/policy/policy_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::vector<stockade::Policy>> policies = stockade::ParsePolicyText(text, "fuzz.yaml");
  if (!policies.ok()) {
    FUZZ_CHECK(policies.status().code() == absl::StatusCode::kInvalidArgument, policies.status().ToString());
    // Errors say where: the file name leads (a duplicate name says both places).
    const std::string message(policies.status().message());
    FUZZ_CHECK(absl::StartsWith(message, "fuzz.yaml") || absl::StartsWith(message, "policy name '"), message);
    return 0;
  }
  for (const stockade::Policy& policy : *policies) {
    FUZZ_CHECK(!policy.name.empty(), "a parsed policy has a name");
    FUZZ_CHECK(absl::StartsWith(policy.location, "fuzz.yaml:"), policy.location);
    FUZZ_CHECK(policy.endpoint_selector.has_value(), "a file policy selects its endpoints");
  }
  FUZZ_CHECK(stockade::CheckUniquePolicyNames(*policies).ok(), "names of one text are unique");
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
//
// A container's stockade.policy label (YAML or JSON, written by whoever runs
// the container): any text is a policy for that container or an error naming
// the container and the label, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "fuzz/fuzz_check.h"
#include "stockade/policy/policy_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<stockade::Policy> policy = stockade::ParseLabelPolicy(text, "fuzz-1");
  if (!policy.ok()) {
    FUZZ_CHECK(policy.status().code() == absl::StatusCode::kInvalidArgument, policy.status().ToString());
    FUZZ_CHECK(absl::StartsWith(policy.status().message(), "container fuzz-1 label stockade.policy"),
               policy.status().ToString());
    return 0;
  }
  FUZZ_CHECK(policy->name == "container/fuzz-1", policy->name);
  FUZZ_CHECK(!policy->endpoint_selector.has_value(), "a label policy selects the container that carries it");
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
//
// A container's labels as Docker reports them, {"container": {...},
// "image": {...}} (Config.Labels of the container and of its image), through
// ReadContainerLabels and, when the container carries one, the label policy
// parser. Beyond "no crash": an image never chooses an identity label (compose's
// included) or a policy, and every identity label is one the container really has.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "fuzz/fuzz_check.h"
#include "stockade/identity/labels.h"
#include "stockade/policy/policy_parser.h"

namespace {

// Only objects of strings are labels; anything else is not an input of interest.
bool ReadLabels(const nlohmann::json& doc, const char* key, stockade::LabelMap& out) {
  auto found = doc.find(key);
  if (found == doc.end()) return true;
  if (!found->is_object()) return false;
  for (const auto& [k, v] : found->items()) {
    if (!v.is_string()) return false;
    out[k] = v.get<std::string>();
  }
  return true;
}

// The container label that an identity key stands for.
std::string ContainerLabelKey(const std::string& identity_key) {
  if (identity_key == stockade::kComposeProjectKey) return std::string(stockade::kComposeProjectLabel);
  if (identity_key == stockade::kComposeServiceKey) return std::string(stockade::kComposeServiceLabel);
  return std::string(stockade::kStockadeLabelPrefix) + identity_key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json doc = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return 0;
  stockade::LabelMap container, image;
  if (!ReadLabels(doc, "container", container) || !ReadLabels(doc, "image", image)) return 0;

  const stockade::StockadeLabels labels = stockade::ReadContainerLabels(container, image);
  for (const auto& [key, value] : labels.identity) {
    const std::string label = ContainerLabelKey(key);
    auto found = container.find(label);
    FUZZ_CHECK(found != container.end() && found->second == value, "identity label " + key + " is the container's");
    const bool compose = label == stockade::kComposeProjectLabel || label == stockade::kComposeServiceLabel;
    if (!compose) FUZZ_CHECK(!key.empty() && !absl::StartsWith(key, "compose."), "identity key " + key);
    // No exemption: compose's labels grant an identity too, so the image cannot set them either.
    auto by_image = image.find(label);
    FUZZ_CHECK(by_image == image.end() || by_image->second != value, "the image set " + label);
  }
  for (size_t i = 1; i < labels.ignored.size(); ++i)
    FUZZ_CHECK(labels.ignored[i - 1].key <= labels.ignored[i].key, "ignored labels are ordered by key");

  auto policy_label = container.find(std::string(stockade::kPolicyLabel));
  if (labels.policy_text) {
    FUZZ_CHECK(policy_label != container.end() && policy_label->second == *labels.policy_text, "policy text");
    auto by_image = image.find(std::string(stockade::kPolicyLabel));
    FUZZ_CHECK(by_image == image.end() || by_image->second != *labels.policy_text, "an image set the policy");
    absl::StatusOr<stockade::Policy> policy = stockade::ParseLabelPolicy(*labels.policy_text, "fuzz-1");
    if (policy.ok()) FUZZ_CHECK(policy->name == "container/fuzz-1", policy->name);
  } else if (policy_label != container.end()) {
    auto by_image = image.find(std::string(stockade::kPolicyLabel));
    FUZZ_CHECK(by_image != image.end() && by_image->second == policy_label->second,
               "the container's own policy label was dropped");
  }
  return 0;
}

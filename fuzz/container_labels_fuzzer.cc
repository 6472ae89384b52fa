// SPDX-License-Identifier: Apache-2.0
//
// A container's labels as Docker reports them, {"container": {...},
// "image": {...}, "networks": [...]} (Config.Labels of the container and of
// its image, the names of the networks it is attached to), through
// ReadContainerLabels and, when the container carries one, the label policy
// parser. Beyond "no crash": an image never chooses an identity label (compose's
// included) or a policy, every identity label is one the container really has,
// and a network label is exactly an attached network's, whatever the labels say.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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

// Only an array of strings is a list of networks.
bool ReadNetworks(const nlohmann::json& doc, std::vector<std::string>& out) {
  auto found = doc.find("networks");
  if (found == doc.end()) return true;
  if (!found->is_array()) return false;
  for (const nlohmann::json& name : *found) {
    if (!name.is_string()) return false;
    out.push_back(name.get<std::string>());
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json doc = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return 0;
  stockade::LabelMap container, image;
  std::vector<std::string> networks;
  if (!ReadLabels(doc, "container", container) || !ReadLabels(doc, "image", image) || !ReadNetworks(doc, networks))
    return 0;

  const stockade::StockadeLabels labels = stockade::ReadContainerLabels(container, image, networks);
  for (const auto& [key, value] : labels.identity) {
    if (absl::StartsWith(key, stockade::kNetworkKeyPrefix)) {
      const std::string network = key.substr(stockade::kNetworkKeyPrefix.size());
      FUZZ_CHECK(std::find(networks.begin(), networks.end(), network) != networks.end(),
                 "network label " + key + " is an attached network's");
      FUZZ_CHECK(value == stockade::kNetworkAttached, "network label " + key + " is " + value);
      continue;
    }
    const std::string label = ContainerLabelKey(key);
    auto found = container.find(label);
    FUZZ_CHECK(found != container.end() && found->second == value, "identity label " + key + " is the container's");
    const bool compose = label == stockade::kComposeProjectLabel || label == stockade::kComposeServiceLabel;
    if (!compose) FUZZ_CHECK(!key.empty() && !absl::StartsWith(key, "compose."), "identity key " + key);
    // No exemption: compose's labels grant an identity too, so the image cannot set them either.
    auto by_image = image.find(label);
    FUZZ_CHECK(by_image == image.end() || by_image->second != value, "the image set " + label);
  }
  // Networks never make a container managed on their own.
  FUZZ_CHECK(labels.identity.empty() || std::any_of(labels.identity.begin(), labels.identity.end(), [](const auto& l) {
               return !absl::StartsWith(l.first, stockade::kNetworkKeyPrefix);
             }), "network labels alone made an identity");
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

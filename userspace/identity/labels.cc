// SPDX-License-Identifier: Apache-2.0
#include "stockade/identity/labels.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stockade {
namespace {

bool SetByImage(const LabelMap& image, const std::string& key, const std::string& value) {
  auto found = image.find(key);
  return found != image.end() && found->second == value;
}

// Why a `stockade.*` label cannot be an identity label; empty when it can.
std::string WhyNotIdentity(absl::string_view name) {
  if (name.empty()) return "no name after 'stockade.'";
  // compose.* comes from compose's own labels; a stockade label must not pose as one.
  if (absl::StartsWith(name, "compose.")) return "reserved: compose.* names come from compose's labels";
  // network.* says which Docker networks the container is on; a label claiming one would be a way onto it.
  if (absl::StartsWith(name, kNetworkKeyPrefix))
    return "reserved: network.* names come from the Docker networks the container is attached to";
  return "";
}

// The identity key a container label joins the identity under; nullopt for
// labels that say nothing to stockade (and for the policy label).
std::optional<std::string> IdentityKeyOf(const std::string& label) {
  if (label == kComposeProjectLabel) return std::string(kComposeProjectKey);
  if (label == kComposeServiceLabel) return std::string(kComposeServiceKey);
  if (label == kPolicyLabel || !absl::StartsWith(label, kStockadeLabelPrefix)) return std::nullopt;
  return label.substr(kStockadeLabelPrefix.size());
}

}  // namespace

StockadeLabels ReadContainerLabels(const LabelMap& container, const LabelMap& image,
                                   const std::vector<std::string>& networks) {
  StockadeLabels out;
  for (const auto& [key, value] : container) {
    const bool is_policy = key == kPolicyLabel;
    const std::optional<std::string> identity_key = IdentityKeyOf(key);
    if (!is_policy && !identity_key) continue;

    // One rule for every label that grants something: the image cannot set it.
    std::string reason;
    if (SetByImage(image, key, value)) {
      reason = is_policy ? "set by the image: an image cannot carry its own policy"
                         : "set by the image: an image cannot give its containers an identity";
    } else if (identity_key && key != kComposeProjectLabel && key != kComposeServiceLabel) {
      reason = WhyNotIdentity(*identity_key);
    }
    if (!reason.empty()) {
      out.ignored.push_back({key, value, std::move(reason)});
    } else if (is_policy) {
      out.policy_text = value;
    } else {
      out.identity[*identity_key] = value;
    }
  }
  // Only a managed container's: an unlabelled one stays `unmanaged`, as
  // before, instead of every container on the host becoming managed.
  if (!out.identity.empty())
    for (const std::string& network : networks)
      if (!network.empty()) out.identity[absl::StrCat(kNetworkKeyPrefix, network)] = std::string(kNetworkAttached);
  std::sort(out.ignored.begin(), out.ignored.end(),
            [](const IgnoredLabel& a, const IgnoredLabel& b) { return a.key < b.key; });
  return out;
}

std::string FormatLabels(const LabelSet& labels) {
  return absl::StrCat("{", absl::StrJoin(labels, ", ", absl::PairFormatter("=")), "}");
}

}  // namespace stockade

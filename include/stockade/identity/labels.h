// SPDX-License-Identifier: Apache-2.0
//
// Which of a container's labels make its identity. A container's identity
// labels are its `stockade.<name>` labels, named `<name>` in policy, plus
// compose's project and service labels, named `compose.project` and
// `compose.service`, and, for a container that has any of those, one
// `network.<name>: attached` per Docker network it is attached to, which no
// label can set. Labels the image set (Docker copies an image's LABELs
// into every container's labels) give no identity and carry no policy, the
// compose labels included: a pulled image must not be able to choose its own
// access. Pure logic.
#ifndef STOCKADE_INCLUDE_STOCKADE_IDENTITY_LABELS_H_
#define STOCKADE_INCLUDE_STOCKADE_IDENTITY_LABELS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace stockade {

// Labels as Docker reports them (the same type as DockerLabels).
using LabelMap = absl::flat_hash_map<std::string, std::string>;

// Identity labels as policy names them; ordered, so one set has one form.
using LabelSet = std::map<std::string, std::string>;

inline constexpr absl::string_view kStockadeLabelPrefix = "stockade.";
// Carries a container's own policy (docs/policy.md), not part of its identity.
inline constexpr absl::string_view kPolicyLabel = "stockade.policy";
inline constexpr absl::string_view kComposeProjectLabel = "com.docker.compose.project";
inline constexpr absl::string_view kComposeServiceLabel = "com.docker.compose.service";
inline constexpr absl::string_view kComposeProjectKey = "compose.project";
inline constexpr absl::string_view kComposeServiceKey = "compose.service";
// The implicit labels of a container's Docker networks: `network.<name>: attached`.
inline constexpr absl::string_view kNetworkKeyPrefix = "network.";
inline constexpr absl::string_view kNetworkAttached = "attached";

// A label that would join the identity or carry policy but was not used, and
// why: shown in the endpoint's status.
struct IgnoredLabel {
  std::string key;  // the container label's key, e.g. "stockade.tier"
  std::string value;
  std::string reason;
  bool operator==(const IgnoredLabel&) const = default;
};

// What a container's labels say to stockade.
struct StockadeLabels {
  LabelSet identity;                       // empty: the container is unmanaged
  std::optional<std::string> policy_text;  // the stockade.policy label, set at run time
  std::vector<IgnoredLabel> ignored;       // ordered by key
};

// `container` is the container's Config.Labels, `image` its image's. A
// `stockade.*` or compose label whose key and value both equal the image's
// was set by the image and is ignored; a value overridden at run time counts.
// (Docker merges the two, so a run that repeats the image's own value cannot
// be told apart from the image: it is ignored too.) `networks` are the names
// of the Docker networks the container is attached to: each joins the
// identity as `network.<name>: attached`, but only of a container that has
// identity labels of its own, so that an unlabelled container stays
// unmanaged (docs/policy.md says why). A `stockade.network.*` label is
// ignored: only the attachment itself says a container is on a network.
StockadeLabels ReadContainerLabels(const LabelMap& container, const LabelMap& image,
                                   const std::vector<std::string>& networks = {});

// "{compose.service=web, tier=db}".
std::string FormatLabels(const LabelSet& labels);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_IDENTITY_LABELS_H_

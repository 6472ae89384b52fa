// SPDX-License-Identifier: Apache-2.0
//
// Engine API response bodies to typed values. Pure: no I/O, so the unit tests
// feed them bodies captured from a real dockerd (tests/data/docker/).
// Malformed or unexpected bodies are InvalidArgument errors naming the field.
#ifndef STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_PARSE_H_
#define STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_PARSE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stockade/docker/docker_types.h"

namespace stockade {

[[nodiscard]] absl::StatusOr<std::vector<ContainerSummary>> ParseContainerList(absl::string_view body);
[[nodiscard]] absl::StatusOr<ContainerInfo> ParseContainerInspect(absl::string_view body);
[[nodiscard]] absl::StatusOr<ImageInfo> ParseImageInspect(absl::string_view body);
[[nodiscard]] absl::StatusOr<NetworkInfo> ParseNetworkInspect(absl::string_view body);
[[nodiscard]] absl::StatusOr<std::vector<NetworkInfo>> ParseNetworkList(absl::string_view body);

// One line of the GET /events stream. nullopt for an event outside the
// subscribed set (e.g. a network's own "destroy", which the server-side
// filter type+event lets through).
[[nodiscard]] absl::StatusOr<std::optional<DockerEvent>> ParseDockerEvent(absl::string_view line);

// The `filters` query value of GET /events that selects the subscribed set.
std::string SubscribedEventFilters();

// "container start", "network disconnect": for logs and test messages.
std::string DescribeDockerEvent(const DockerEvent& event);

// The "message" of an error body ({"message":"No such container: x"}); the
// body itself, trimmed, if it is not such JSON.
std::string ParseErrorMessage(absl::string_view body);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_PARSE_H_

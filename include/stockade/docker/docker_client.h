// SPDX-License-Identifier: Apache-2.0
//
// A client of the Docker Engine API: the calls the agent needs, over a unix
// socket or TCP (optionally TLS), through libcurl, answering typed values.
//
//   absl::StatusOr<DockerClient> docker = DockerClient::FromEnvironment();
//   absl::StatusOr<ContainerInfo> info = docker->InspectContainer("web");
//
// Errors name the call, the object and the daemon's answer:
//   "inspect container abc123: 404 No such container: abc123"  (NotFound)
//   "ping: connect to unix:///var/run/docker.sock: No such file or directory"
//                                                               (Unavailable)
// Connection failures are always Unavailable, so NotFound means the daemon
// answered that the object does not exist.
//
// Keeping the agent's view in step with dockerd (the resync loop):
//   1. stream = SubscribeEvents()  -- returns once dockerd has subscribed it,
//   2. ListContainers() and InspectContainer() each one: the full state,
//   3. apply stream->Next() events as they come; an event about a container
//      already seen in step 2 is harmless (re-inspect it).
//   4. on an error from Next() (dockerd restarted, connection lost), go back
//      to 1 after a backoff.
// Subscribing before listing is what makes this lossless: a change between
// the list and the subscription would otherwise never be seen.
//
// Thread-safe: every call uses its own connection. Requests go to the daemon
// directly, never through an HTTP proxy named in the environment. The API
// version is pinned to v1.41 (dockerd 20.10, Debian 12's; newer daemons serve
// it too).
#ifndef STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_CLIENT_H_
#define STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "stockade/docker/docker_endpoint.h"
#include "stockade/docker/docker_events.h"
#include "stockade/docker/docker_types.h"

namespace stockade {

struct DockerClientOptions {
  absl::Duration connect_timeout = absl::Seconds(10);
  // Whole request, connect included; not applied to the event stream.
  absl::Duration request_timeout = absl::Seconds(30);
};

class DockerClient {
 public:
  explicit DockerClient(DockerEndpoint endpoint, DockerClientOptions options = {});

  // The endpoint from DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH.
  [[nodiscard]] static absl::StatusOr<DockerClient> FromEnvironment(DockerClientOptions options = {});

  const DockerEndpoint& endpoint() const { return endpoint_; }

  // OK when the daemon answers and accepts the pinned API version.
  [[nodiscard]] absl::Status Ping() const;
  // Every container, running or not, with its labels.
  [[nodiscard]] absl::StatusOr<std::vector<ContainerSummary>> ListContainers() const;
  // `id_or_name`: a full or unique-prefix id, or a name.
  [[nodiscard]] absl::StatusOr<ContainerInfo> InspectContainer(absl::string_view id_or_name) const;
  // `id_or_reference`: "sha256:...", or a reference such as "busybox:latest".
  [[nodiscard]] absl::StatusOr<ImageInfo> InspectImage(absl::string_view id_or_reference) const;
  [[nodiscard]] absl::StatusOr<NetworkInfo> InspectNetwork(absl::string_view id_or_name) const;
  // The networks of `driver` ("macvlan", ...), with their driver options.
  [[nodiscard]] absl::StatusOr<std::vector<NetworkInfo>> ListNetworks(absl::string_view driver) const;

  // Opens the event stream of container start/die/destroy/restart/rename and
  // network connect/disconnect. Returns once dockerd has answered, i.e. once
  // every later event is sure to be delivered (see the resync loop above).
  [[nodiscard]] absl::StatusOr<std::unique_ptr<DockerEventStream>> SubscribeEvents(
      DockerEventStreamOptions options = {}) const;

 private:
  // GET <api>/<path_and_query>; the body of a 2xx answer. `what` heads errors.
  [[nodiscard]] absl::StatusOr<std::string> Get(absl::string_view path_and_query, absl::string_view what) const;

  DockerEndpoint endpoint_;
  DockerClientOptions options_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_CLIENT_H_

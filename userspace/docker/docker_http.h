// SPDX-License-Identifier: Apache-2.0
//
// Internal to the Docker client: libcurl handles set up for a DockerEndpoint,
// and the mapping of HTTP errors to statuses (failed transfers: curl_request.h).
#ifndef STOCKADE_USERSPACE_DOCKER_DOCKER_HTTP_H_
#define STOCKADE_USERSPACE_DOCKER_DOCKER_HTTP_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "stockade/docker/docker_endpoint.h"
#include "userspace/net/curl_request.h"

namespace stockade::docker_internal {

// Engine API version of every request. dockerd 20.10 (Debian 12's) serves up
// to 1.41, and newer daemons keep serving it.
inline constexpr char kApiVersion[] = "v1.41";

using curl_internal::AppendToString;
using curl_internal::CurlEasy;
using curl_internal::CurlMulti;
using curl_internal::TransferError;
using curl_internal::UrlEscape;
// One GET's easy handle, error buffer and what error messages name.
using DockerRequest = curl_internal::CurlRequest;

// A GET of <base_url>/<api version>/<path_and_query> over `endpoint`: unix
// socket or TCP, TLS files, connect timeout. The caller sets the callbacks.
[[nodiscard]] absl::StatusOr<std::unique_ptr<DockerRequest>> NewDockerRequest(const DockerEndpoint& endpoint,
                                                                              absl::string_view path_and_query,
                                                                              absl::string_view what,
                                                                              absl::Duration connect_timeout);

// The status of a completed request: OK for 2xx, else e.g.
//   NotFound "inspect container abc: 404 No such container: abc".
[[nodiscard]] absl::Status HttpStatus(const DockerRequest& request, absl::string_view body);

}  // namespace stockade::docker_internal

#endif  // STOCKADE_USERSPACE_DOCKER_DOCKER_HTTP_H_

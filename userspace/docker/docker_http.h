// SPDX-License-Identifier: Apache-2.0
//
// Internal to the Docker client: libcurl handles set up for a DockerEndpoint,
// and the mapping of failed transfers and HTTP errors to statuses.
#ifndef STOCKADE_USERSPACE_DOCKER_DOCKER_HTTP_H_
#define STOCKADE_USERSPACE_DOCKER_DOCKER_HTTP_H_

#include <curl/curl.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "stockade/docker/docker_endpoint.h"

namespace stockade::docker_internal {

// Engine API version of every request. dockerd 20.10 (Debian 12's) serves up
// to 1.41, and newer daemons keep serving it.
inline constexpr char kApiVersion[] = "v1.41";

struct CurlEasyDeleter {
  void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyDeleter>;

struct CurlMultiDeleter {
  void operator()(CURLM* multi) const { curl_multi_cleanup(multi); }
};
using CurlMulti = std::unique_ptr<CURLM, CurlMultiDeleter>;

// One GET's easy handle and the buffer libcurl writes its error text into.
// libcurl keeps a pointer to `error`, so a request lives behind a unique_ptr.
struct DockerRequest {
  CurlEasy handle;
  char error[CURL_ERROR_SIZE] = {};
  std::string what;  // heads error messages: "inspect container abc"
  std::string host;  // the endpoint's, for error messages
  std::string ca_file;  // with TLS, for error messages
};

// A GET of <base_url>/<api version>/<path_and_query> over `endpoint`: unix
// socket or TCP, TLS files, connect timeout. The caller sets the callbacks.
[[nodiscard]] absl::StatusOr<std::unique_ptr<DockerRequest>> NewDockerRequest(const DockerEndpoint& endpoint,
                                                                              absl::string_view path_and_query,
                                                                              absl::string_view what,
                                                                              absl::Duration connect_timeout);

// A transfer that ended with `code` != CURLE_OK, e.g.
//   Unavailable "ping: connect to unix:///var/run/docker.sock: No such file or directory"
//   DeadlineExceeded "list containers: unix:///var/run/docker.sock did not answer in time: ..."
//   Unavailable "ping: tcp://10.0.0.5:2376: TLS expired: the daemon's certificate has expired (...)";
//     a TLS failure says which of wrong CA, expired, not yet valid, name mismatch.
[[nodiscard]] absl::Status TransferError(const DockerRequest& request, CURLcode code);

// The status of a completed request: OK for 2xx, else e.g.
//   NotFound "inspect container abc: 404 No such container: abc".
[[nodiscard]] absl::Status HttpStatus(const DockerRequest& request, absl::string_view body);

// Percent-encodes a path segment or query value.
std::string UrlEscape(absl::string_view text);

// CURLOPT_WRITEFUNCTION that appends to the std::string in userdata.
size_t AppendToString(char* data, size_t size, size_t count, void* userdata);

}  // namespace stockade::docker_internal

#endif  // STOCKADE_USERSPACE_DOCKER_DOCKER_HTTP_H_

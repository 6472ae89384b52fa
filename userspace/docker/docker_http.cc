// SPDX-License-Identifier: Apache-2.0
#include "userspace/docker/docker_http.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "stockade/docker/docker_parse.h"

namespace stockade::docker_internal {
namespace {

// How TLS errors name dockerd and the settings that point at it.
constexpr curl_internal::CurlPeerWords kDockerWords{
    .peer = "the daemon", .host_setting = "DOCKER_HOST", .client_files = "cert.pem, key.pem"};

absl::StatusCode CodeForHttpStatus(long http_status) {
  switch (http_status) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 409:
      return absl::StatusCode::kFailedPrecondition;
    case 500:
      return absl::StatusCode::kInternal;
    case 503:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kUnknown;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<DockerRequest>> NewDockerRequest(const DockerEndpoint& endpoint,
                                                                absl::string_view path_and_query,
                                                                absl::string_view what,
                                                                absl::Duration connect_timeout) {
  std::optional<curl_internal::CurlTlsFiles> tls;
  if (endpoint.tls)
    tls = curl_internal::CurlTlsFiles{endpoint.tls->ca_file, endpoint.tls->cert_file, endpoint.tls->key_file};
  auto request = curl_internal::NewCurlRequest(absl::StrCat(endpoint.base_url, "/", kApiVersion, path_and_query), what,
                                               endpoint.host, tls ? &*tls : nullptr, connect_timeout, kDockerWords);
  if (!request.ok()) return request.status();
  CURL* h = (*request)->handle.get();
  const CURLcode code = !endpoint.unix_socket_path.empty()
                            ? curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, endpoint.unix_socket_path.c_str())
                            : curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  if (code != CURLE_OK)
    return absl::InternalError(absl::StrCat(what, ": curl_easy_setopt: ", curl_easy_strerror(code)));
  return request;
}

absl::Status HttpStatus(const DockerRequest& request, absl::string_view body) {
  const long http_status = curl_internal::ResponseCode(request);
  if (http_status >= 200 && http_status < 300) return absl::OkStatus();
  return absl::Status(CodeForHttpStatus(http_status),
                      absl::StrCat(request.what, ": ", http_status, " ", ParseErrorMessage(body)));
}

}  // namespace stockade::docker_internal

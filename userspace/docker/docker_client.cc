// SPDX-License-Identifier: Apache-2.0
#include "stockade/docker/docker_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "stockade/docker/docker_parse.h"
#include "userspace/docker/docker_http.h"

namespace stockade {

using docker_internal::UrlEscape;

DockerClient::DockerClient(DockerEndpoint endpoint, DockerClientOptions options)
    : endpoint_(std::move(endpoint)), options_(options) {}

absl::StatusOr<DockerClient> DockerClient::FromEnvironment(DockerClientOptions options) {
  absl::StatusOr<DockerEndpoint> endpoint = ResolveDockerEndpoint(ReadDockerEnvironment());
  if (!endpoint.ok()) return endpoint.status();
  return DockerClient(*std::move(endpoint), options);
}

absl::StatusOr<std::string> DockerClient::Get(absl::string_view path_and_query, absl::string_view what) const {
  auto request = docker_internal::NewDockerRequest(endpoint_, path_and_query, what, options_.connect_timeout);
  if (!request.ok()) return request.status();
  CURL* handle = (*request)->handle.get();
  std::string body;
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, &docker_internal::AppendToString);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(options_.request_timeout)));
  if (CURLcode code = curl_easy_perform(handle); code != CURLE_OK)
    return docker_internal::TransferError(**request, code);
  if (absl::Status status = docker_internal::HttpStatus(**request, body); !status.ok()) return status;
  return body;
}

absl::Status DockerClient::Ping() const { return Get("/_ping", "ping").status(); }

absl::StatusOr<std::vector<ContainerSummary>> DockerClient::ListContainers() const {
  absl::StatusOr<std::string> body = Get("/containers/json?all=1", "list containers");
  if (!body.ok()) return body.status();
  return ParseContainerList(*body);
}

absl::StatusOr<ContainerInfo> DockerClient::InspectContainer(absl::string_view id) const {
  absl::StatusOr<std::string> body =
      Get(absl::StrCat("/containers/", UrlEscape(id), "/json"), absl::StrCat("inspect container ", id));
  if (!body.ok()) return body.status();
  return ParseContainerInspect(*body);
}

absl::StatusOr<ImageInfo> DockerClient::InspectImage(absl::string_view id) const {
  absl::StatusOr<std::string> body =
      Get(absl::StrCat("/images/", UrlEscape(id), "/json"), absl::StrCat("inspect image ", id));
  if (!body.ok()) return body.status();
  return ParseImageInspect(*body);
}

absl::StatusOr<NetworkInfo> DockerClient::InspectNetwork(absl::string_view id) const {
  absl::StatusOr<std::string> body =
      Get(absl::StrCat("/networks/", UrlEscape(id)), absl::StrCat("inspect network ", id));
  if (!body.ok()) return body.status();
  return ParseNetworkInspect(*body);
}

absl::StatusOr<std::vector<NetworkInfo>> DockerClient::ListNetworks(absl::string_view driver) const {
  std::string filters = absl::StrCat("{\"driver\":[\"", driver, "\"]}");
  absl::StatusOr<std::string> body =
      Get(absl::StrCat("/networks?filters=", UrlEscape(filters)), absl::StrCat("list ", driver, " networks"));
  if (!body.ok()) return body.status();
  return ParseNetworkList(*body);
}

absl::StatusOr<std::unique_ptr<DockerEventStream>> DockerClient::SubscribeEvents(
    DockerEventStreamOptions options) const {
  return DockerEventStream::Open(endpoint_, options);
}

}  // namespace stockade

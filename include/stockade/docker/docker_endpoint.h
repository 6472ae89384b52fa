// SPDX-License-Identifier: Apache-2.0
//
// Where the Docker daemon is and how to reach it, resolved from the
// environment the way the docker CLI resolves it:
//   DOCKER_HOST        unix:///path (default unix:///var/run/docker.sock),
//                      tcp://host[:port][/path] (port 2375 when omitted), or a
//                      bare "/path" (unix) or "host:port" (tcp).
//   DOCKER_TLS_VERIFY  any non-empty value: TLS, verifying the daemon's
//                      certificate against DOCKER_CERT_PATH/ca.pem; an empty
//                      DOCKER_HOST then means tcp://localhost:2376.
//   DOCKER_CERT_PATH   ca.pem, cert.pem, key.pem (default $DOCKER_CONFIG, else
//                      ~/.docker). A missing cert.pem or key.pem means no
//                      client certificate, as in the CLI. TLS applies to
//                      unix sockets too, as in the CLI. key.pem must be
//                      private to its owner (no group or other permission
//                      bits), unlike in the CLI: the agent runs as root and
//                      must not use a key that others could have read.
// ssh:// and fd:// hosts (CLI connection helpers) are not supported.
#ifndef STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_ENDPOINT_H_
#define STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_ENDPOINT_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stockade {

inline constexpr char kDefaultDockerHost[] = "unix:///var/run/docker.sock";

struct DockerTlsFiles {
  std::string ca_file;
  std::string cert_file;  // empty: no client certificate
  std::string key_file;   // empty: no client key
};

struct DockerEndpoint {
  // The normalized host, e.g. "unix:///var/run/docker.sock" or
  // "tcp://10.1.2.3:2376": what error messages name.
  std::string host;
  // Set for unix hosts: the socket that carries the HTTP requests.
  std::string unix_socket_path;
  // Prefix of every request URL: "http://localhost" over a unix socket,
  // "http://h:p" or "https://h:p" (plus the host's path, if any) over TCP.
  std::string base_url;
  std::optional<DockerTlsFiles> tls;
};

// The variables as read; empty when unset.
struct DockerEnvironment {
  std::string docker_host;
  std::string tls_verify;
  std::string cert_path;  // DOCKER_CERT_PATH, else $DOCKER_CONFIG, else ~/.docker
};

[[nodiscard]] DockerEnvironment ReadDockerEnvironment();

// OK when `path` is a regular file with no permission bits for group or
// others; otherwise an error naming the file, its mode and the fix
// ("chmod 600 <path>"). Reads the file's metadata only, never its contents.
[[nodiscard]] absl::Status CheckPrivateKeyFile(const std::string& path);
// The same for any secret: `what` heads the message ("etcd password file").
[[nodiscard]] absl::Status CheckPrivateFile(const std::string& path, absl::string_view what);

// InvalidArgument for an unusable DOCKER_HOST ("DOCKER_HOST ssh://x: ssh://
// is not supported; use unix:// or tcp://"); with TLS, the error of
// CheckPrivateKeyFile for a key.pem that others may read.
[[nodiscard]] absl::StatusOr<DockerEndpoint> ResolveDockerEndpoint(const DockerEnvironment& env);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_ENDPOINT_H_

// SPDX-License-Identifier: Apache-2.0
#include "stockade/docker/docker_endpoint.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "stockade/os/errno_status.h"

namespace stockade {
namespace {

// The CLI's defaults for a tcp:// host without a port, and for TLS without a host.
constexpr char kDefaultTcpPort[] = "2375";
constexpr char kDefaultTlsHost[] = "tcp://localhost:2376";

std::string EnvOrEmpty(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

absl::Status BadHost(absl::string_view host, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("DOCKER_HOST ", host, ": ", why));
}

// "host[:port][/path]" or "[v6]:port/path" -> "host:port" and "/path".
absl::Status SplitTcpAddress(absl::string_view original, absl::string_view address, std::string& host_port,
                             std::string& path) {
  const size_t slash = address.find('/');
  absl::string_view authority = address.substr(0, slash);
  path = slash == absl::string_view::npos ? "" : std::string(absl::StripSuffix(address.substr(slash), "/"));
  absl::string_view host = authority;
  absl::string_view port;
  if (absl::StartsWith(authority, "[")) {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return BadHost(original, "unterminated '[' in the address");
    host = authority.substr(0, close + 1);
    absl::string_view rest = authority.substr(close + 1);
    if (!rest.empty() && !absl::ConsumePrefix(&rest, ":")) return BadHost(original, "expected ':' after ']'");
    port = rest;
  } else if (const size_t colon = authority.find(':'); colon != absl::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.find(':') != absl::string_view::npos) return BadHost(original, "an IPv6 address needs [brackets]");
  }
  if (host.empty()) host = "localhost";
  if (port.empty()) port = kDefaultTcpPort;
  int port_number = 0;
  if (!absl::SimpleAtoi(port, &port_number) || port_number < 1 || port_number > 65535)
    return BadHost(original, absl::StrCat("invalid port '", port, "'"));
  host_port = absl::StrCat(host, ":", port_number);
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckPrivateFile(const std::string& path, absl::string_view what) {
  // Only the file's metadata is read here: the secret itself is read later,
  // by libcurl (a key) or into one request (a password), never into a
  // message.
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat(what, " ", path));
  if (!S_ISREG(st.st_mode))
    return absl::FailedPreconditionError(absl::StrCat(what, " ", path, " is not a regular file"));
  const mode_t permissions = st.st_mode & 07777;
  if ((permissions & (S_IRWXG | S_IRWXO)) != 0)
    return absl::PermissionDeniedError(
        absl::StrFormat("%s %s has mode %04o, which lets group or others use it; a secret must be "
                        "private to its owner: chmod 600 %s",
                        what, path, permissions, path));
  return absl::OkStatus();
}

absl::Status CheckPrivateKeyFile(const std::string& path) { return CheckPrivateFile(path, "TLS client key"); }

DockerEnvironment ReadDockerEnvironment() {
  DockerEnvironment env{.docker_host = EnvOrEmpty("DOCKER_HOST"),
                        .tls_verify = EnvOrEmpty("DOCKER_TLS_VERIFY"),
                        .cert_path = EnvOrEmpty("DOCKER_CERT_PATH")};
  if (env.cert_path.empty()) env.cert_path = EnvOrEmpty("DOCKER_CONFIG");
  if (env.cert_path.empty()) env.cert_path = absl::StrCat(EnvOrEmpty("HOME"), "/.docker");
  return env;
}

absl::StatusOr<DockerEndpoint> ResolveDockerEndpoint(const DockerEnvironment& env) {
  const bool tls = !env.tls_verify.empty();
  absl::string_view original = absl::StripAsciiWhitespace(env.docker_host);
  if (original.empty()) original = tls ? kDefaultTlsHost : kDefaultDockerHost;

  absl::string_view scheme;
  absl::string_view address = original;
  if (const size_t sep = original.find("://"); sep != absl::string_view::npos) {
    scheme = original.substr(0, sep);
    address = original.substr(sep + 3);
  } else {
    // Like the CLI: a bare path is a unix socket, anything else host:port.
    scheme = absl::StartsWith(original, "/") || absl::StartsWith(original, "./") ? "unix" : "tcp";
  }
  if (absl::StrContains(address, "://")) return BadHost(original, "more than one scheme");

  DockerEndpoint endpoint;
  const absl::string_view http_scheme = tls ? "https://" : "http://";
  if (scheme == "unix") {
    endpoint.unix_socket_path =
        std::string(address.empty() ? absl::StripPrefix(kDefaultDockerHost, "unix://") : address);
    endpoint.host = absl::StrCat("unix://", endpoint.unix_socket_path);
    // The host part of the URL only fills the Host header here.
    endpoint.base_url = absl::StrCat(http_scheme, "localhost");
  } else if (scheme == "tcp") {
    std::string host_port, path;
    if (absl::Status split = SplitTcpAddress(original, address, host_port, path); !split.ok()) return split;
    endpoint.host = absl::StrCat("tcp://", host_port, path);
    endpoint.base_url = absl::StrCat(http_scheme, host_port, path);
  } else if (scheme == "ssh" || scheme == "fd" || scheme == "npipe") {
    return BadHost(original, absl::StrCat(scheme, ":// is not supported; use unix:// or tcp://"));
  } else {
    return BadHost(original, absl::StrCat("unknown scheme '", scheme, "://'; use unix:// or tcp://"));
  }

  if (tls) {
    auto file_if_present = [](const std::string& path) { return access(path.c_str(), F_OK) == 0 ? path : ""; };
    endpoint.tls = DockerTlsFiles{.ca_file = absl::StrCat(env.cert_path, "/ca.pem"),
                                  .cert_file = file_if_present(absl::StrCat(env.cert_path, "/cert.pem")),
                                  .key_file = file_if_present(absl::StrCat(env.cert_path, "/key.pem"))};
    if (!endpoint.tls->key_file.empty()) {
      if (absl::Status key = CheckPrivateKeyFile(endpoint.tls->key_file); !key.ok()) return key;
    }
  }
  return endpoint;
}

}  // namespace stockade

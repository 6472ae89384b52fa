// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/metrics_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace stockade {

struct MetricsServerAccess {
  static MHD_Result Answer(void* self, MHD_Connection* connection, const char* url, const char* method,
                           const char* /*version*/, const char* /*upload*/, size_t* /*upload_size*/,
                           void** /*state*/) {
    auto* server = static_cast<MetricsServer*>(self);
    std::string body;
    unsigned int code = MHD_HTTP_OK;
    const char* type = "text/plain; version=0.0.4; charset=utf-8";
    if (std::strcmp(method, "GET") != 0 && std::strcmp(method, "HEAD") != 0) {
      code = MHD_HTTP_METHOD_NOT_ALLOWED;
      body = "only GET\n";
    } else if (std::strcmp(url, "/metrics") == 0) {
      body = server->render_();
    } else {
      code = MHD_HTTP_NOT_FOUND;
      body = "stockaded serves /metrics\n";
    }
    MHD_Response* response = MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
    if (!response) return MHD_NO;
    MHD_add_response_header(response, "Content-Type", type);
    MHD_Result queued = MHD_queue_response(connection, code, response);
    MHD_destroy_response(response);
    return queued;
  }
};

namespace {

// "127.0.0.1:9968", "[::1]:9968".
absl::StatusOr<sockaddr_storage> ParseListenAddress(const std::string& address, socklen_t& length) {
  sockaddr_storage storage{};
  size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) || port > 65535)
    return absl::InvalidArgumentError(absl::StrCat("metrics address '", address, "' is not host:port"));
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&storage);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6->sin6_addr) != 1)
      return absl::InvalidArgumentError(absl::StrCat("metrics address '", address, "': bad IPv6 address"));
    length = sizeof(sockaddr_in6);
    return storage;
  }
  auto* a4 = reinterpret_cast<sockaddr_in*>(&storage);
  a4->sin_family = AF_INET;
  a4->sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1)
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", address, "': '", host, "' is not an IP address (e.g. 127.0.0.1:9968)"));
  length = sizeof(sockaddr_in);
  return storage;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& address, Render render) {
  socklen_t length = 0;
  auto addr = ParseListenAddress(address, length);
  if (!addr.ok()) return addr.status();
  std::unique_ptr<MetricsServer> server(new MetricsServer(std::move(render)));
  unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (addr->ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  server->daemon_ = MHD_start_daemon(flags, 0, nullptr, nullptr, &MetricsServerAccess::Answer, server.get(),
                                     MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&*addr),
                                     MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                     MHD_OPTION_END);
  if (!server->daemon_)
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address, " (address in use or not local?)"));
  const MHD_DaemonInfo* info = MHD_get_daemon_info(server->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  server->port_ = info ? info->port : 0;
  server->address_ = absl::StrCat(address.substr(0, address.rfind(':')), ":", server->port_);
  return server;
}

MetricsServer::~MetricsServer() {
  if (daemon_) MHD_stop_daemon(daemon_);
}

}  // namespace stockade

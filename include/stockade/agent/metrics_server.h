// SPDX-License-Identifier: Apache-2.0
//
// Serves GET /metrics in the Prometheus text format, over libmicrohttpd on a
// thread of its own. It listens on loopback unless told otherwise: the
// counters say which containers talk to which.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_METRICS_SERVER_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_METRICS_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

struct MHD_Daemon;

namespace stockade {

inline constexpr char kDefaultMetricsAddress[] = "127.0.0.1:9968";

class MetricsServer {
 public:
  using Render = std::function<std::string()>;

  // `address` is "host:port" or "[v6]:port"; port 0 picks a free one (see port()).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& address, Render render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  uint16_t port() const { return port_; }
  const std::string& address() const { return address_; }  // with the port it got

 private:
  explicit MetricsServer(Render render) : render_(std::move(render)) {}
  friend struct MetricsServerAccess;

  Render render_;
  MHD_Daemon* daemon_ = nullptr;
  uint16_t port_ = 0;
  std::string address_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_METRICS_SERVER_H_

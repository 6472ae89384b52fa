// SPDX-License-Identifier: Apache-2.0
//
// The agent's control socket: one JSON request per connection, one JSON
// answer, over a unix socket that only root may open (mode 0600).
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_CONTROL_SOCKET_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_CONTROL_SOCKET_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "stockade/os/scoped_fd.h"

namespace stockade {

std::string DefaultControlSocketPath(const std::string& instance);

class ControlServer {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;

  // Binds `path` (replacing a stale socket file) and serves on a thread.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ControlServer>> Start(const std::string& path, Handler handler);
  ~ControlServer();

 private:
  ControlServer(ScopedFd listener, std::string path, Handler handler);
  void Serve();

  ScopedFd listener_;
  ScopedFd wakeup_;  // eventfd that tells Serve() to stop
  std::string path_;
  Handler handler_;
  std::thread thread_;
};

// Sends one request and returns the answer. Errors say what to do
// ("stockaded is not running (no socket at ...)", "permission denied: run as root").
[[nodiscard]] absl::StatusOr<nlohmann::json> ControlRequest(const std::string& path, const nlohmann::json& request,
                                                            absl::Duration timeout = absl::Seconds(10));

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_CONTROL_SOCKET_H_

// SPDX-License-Identifier: Apache-2.0
//
// dockerd's event stream (GET /events: chunked, one JSON object per line),
// read without a thread of its own: Next() drives the transfer and blocks in
// poll(2) until data, the timeout, or Stop() from any thread.
//
//   auto stream = docker.SubscribeEvents();
//   while (true) {
//     absl::StatusOr<std::optional<DockerEvent>> event = stream->Next(absl::Seconds(1));
//     if (!event.ok()) break;   // Cancelled after Stop(); else reconnect with backoff
//     if (*event) Handle(**event);
//   }
#ifndef STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_EVENTS_H_
#define STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_EVENTS_H_

#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "stockade/docker/docker_endpoint.h"
#include "stockade/docker/docker_types.h"

namespace stockade {

struct DockerEventStreamOptions {
  // Connecting and dockerd's answer (its response headers) together.
  absl::Duration open_timeout = absl::Seconds(10);
  // dockerd ends the stream at this time, which Next() reports like any end.
  std::optional<absl::Time> until;
};

class DockerEventStream {
 public:
  // Returns once dockerd has answered 200: it has registered the subscription
  // by then, so no later event is missed.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DockerEventStream>> Open(
      const DockerEndpoint& endpoint, const DockerEventStreamOptions& options = {});

  DockerEventStream(const DockerEventStream&) = delete;
  DockerEventStream& operator=(const DockerEventStream&) = delete;
  ~DockerEventStream();

  // The next subscribed event, or nullopt if none came within `timeout`.
  // Errors end the stream, and every later call returns the same error:
  //   Cancelled         Stop() was called
  //   Unavailable       dockerd ended the stream (restart, `until`) or the
  //                     connection broke: reconnect and resync
  //   InvalidArgument   a line that is not an event
  // Call from one thread at a time.
  [[nodiscard]] absl::StatusOr<std::optional<DockerEvent>> Next(absl::Duration timeout);

  // Ends the stream: a Next() blocked in another thread returns Cancelled at
  // once. Thread-safe and idempotent. The stream must outlive that Next().
  void Stop();

 private:
  struct Transfer;  // libcurl's handles and what the callbacks fill
  explicit DockerEventStream(std::unique_ptr<Transfer> transfer);

  std::unique_ptr<Transfer> transfer_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_EVENTS_H_

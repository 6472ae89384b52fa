// SPDX-License-Identifier: Apache-2.0
//
// The agent's side of drop events: the one reader of the datapath's ring
// buffer, a bounded history, and the subscribers (stockade-tail) on a unix
// socket that only root may open.
//
//   ring buffer --(epoll)--> EventRecord (+ the agent's EventContext)
//     -> history (the last N, for --last and --since)
//     -> each subscriber whose filter matches: one JSON line in its bounded queue
//
// One thread does all of it, without the agent's lock, so a reconcile never
// delays events and a subscriber never delays the agent: sockets are
// non-blocking, and a subscriber that does not read loses its own oldest
// lines (SubscriberQueue), counted and told.
//
// Protocol: the client sends one JSON line
//   {"filter": {...EventFilter...}, "last": N, "since_ns": T, "follow": true}
// and reads JSON lines: {"type":"hello",...}, the matching history,
// {"type":"history_end"}, then (when following) events as they come and
// {"type":"lost",...} notices. docs/events.md has the fields.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_EVENT_HUB_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_EVENT_HUB_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "stockade/datapath/event_reader.h"
#include "stockade/events/event_filter.h"
#include "stockade/events/event_record.h"
#include "stockade/events/subscriber_queue.h"
#include "stockade/os/scoped_fd.h"

namespace stockade {

struct EventHubOptions {
  std::string socket_path;  // e.g. /run/stockade/default.events.sock
  size_t history = 8192;    // events kept for --last and --since
  size_t subscriber_queue = 65536;  // lines waiting per subscriber before its oldest are dropped
  // Each subscriber's socket send buffer: deep, for fewer writes and wakeups at a million lines a second.
  int socket_buffer_bytes = 4 << 20;
};

struct EventHubStats {
  uint64_t received = 0;         // records read from the ring buffer
  uint64_t drops_received = 0;   // the drops the drop and audit records stand for (sum of counts)
  // What the records stand for, by verdict and direction: drops, audits, and
  // (VERDICT_FORWARDED) allowed new flows.
  uint64_t flows[VERDICT_MAX][DIR_MAX] = {};
  uint64_t malformed = 0;        // records of the wrong size: lost at the agent
  uint64_t subscriber_lost = 0;  // lines dropped from subscribers' queues, all subscribers
  uint64_t subscribers = 0;      // connected now
};

class EventHub {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EventHub>> Start(int ringbuf_fd, EventHubOptions options);
  ~EventHub();  // stops the thread, closes subscribers, removes the socket
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // What events are enriched with from now on (the agent calls it after each reconcile).
  void SetContext(std::shared_ptr<const EventContext> context);
  EventHubStats Stats() const;

 private:
  struct Subscriber;
  EventHub(EventHubOptions options, ScopedFd listener, ScopedFd epoll, ScopedFd wakeup);
  void Loop();
  void OnEvent(const drop_event& raw);
  void Accept();
  void OnClientReadable(int fd);
  void Subscribe(Subscriber& s, const std::string& request_line);
  void Flush(Subscriber& s);
  void Close(int fd);
  void Watch(int fd, uint32_t events, int op);
  int64_t RealtimeNs(uint64_t monotonic_ns);
  void StartReading();
  std::string TakeSpareLine();

  EventHubOptions options_;
  ScopedFd listener_;
  ScopedFd epoll_;
  ScopedFd wakeup_;
  std::unique_ptr<EventReader> reader_;
  std::thread thread_;
  std::atomic<bool> reading_{false};  // the ring buffer is in the epoll set
  bool ring_backlog_ = false;         // the last batch was full: more records may wait

  mutable std::mutex context_mu_;
  std::shared_ptr<const EventContext> context_;  // guarded by context_mu_
  std::shared_ptr<const EventContext> batch_context_;  // the event thread's copy for one drain

  std::deque<EventRecord> history_;
  std::vector<std::string> spare_lines_;  // written lines, emptied, kept for their memory
  std::map<int, std::unique_ptr<Subscriber>> clients_;  // by fd
  int64_t realtime_offset_ns_ = 0;
  int64_t offset_refreshed_ns_ = 0;

  std::atomic<uint64_t> received_{0}, drops_received_{0}, subscriber_lost_{0}, subscribers_{0};
  std::atomic<uint64_t> flows_[VERDICT_MAX][DIR_MAX] = {};
};

std::string DefaultEventSocketPath(const std::string& instance);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_EVENT_HUB_H_

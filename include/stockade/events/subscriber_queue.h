// SPDX-License-Identifier: Apache-2.0
//
// The lines waiting for one subscriber. It is bounded: when a subscriber
// reads slower than events come, its oldest waiting lines are dropped (never
// the one half written), and before the next line it is told how many, in a
// line of its own: {"type":"lost","stage":"subscriber","count":N}. So a stuck
// subscriber costs the agent a bounded amount of memory and nobody else
// anything. Pure logic; the agent's event hub does the writing.
#ifndef STOCKADE_INCLUDE_STOCKADE_EVENTS_SUBSCRIBER_QUEUE_H_
#define STOCKADE_INCLUDE_STOCKADE_EVENTS_SUBSCRIBER_QUEUE_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace stockade {

class SubscriberQueue {
 public:
  explicit SubscriberQueue(size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}

  // Queues one line (with its newline); drops the oldest waiting line when full.
  void Push(std::string line);
  // Points `iov` at what to write next, in order; returns how many it filled.
  size_t Gather(iovec* iov, size_t max_iov);
  // `bytes` of what Gather offered were written. Lines written whole are
  // handed to `spent` when given (emptied, their memory kept for reuse).
  void Consumed(size_t bytes, std::vector<std::string>* spent = nullptr);

  bool empty() const { return inflight_.size() == inflight_offset_ && lines_.empty() && pending_lost_ == 0; }
  size_t waiting() const { return lines_.size(); }
  uint64_t lost_total() const { return lost_total_; }

 private:
  size_t capacity_;
  std::deque<std::string> lines_;
  std::string inflight_;  // begun, to be finished before anything else
  size_t inflight_offset_ = 0;
  uint64_t pending_lost_ = 0;  // dropped since the last notice
  uint64_t lost_total_ = 0;
};

std::string LostNotice(const char* stage, uint64_t count);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_EVENTS_SUBSCRIBER_QUEUE_H_

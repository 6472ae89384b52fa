// SPDX-License-Identifier: Apache-2.0
#include "stockade/events/subscriber_queue.h"

#include "absl/strings/str_cat.h"

namespace stockade {

std::string LostNotice(const char* stage, uint64_t count) {
  return absl::StrCat("{\"type\":\"lost\",\"stage\":\"", stage, "\",\"count\":", count, "}\n");
}

void SubscriberQueue::Push(std::string line) {
  if (lines_.size() >= capacity_) {
    lines_.pop_front();
    ++pending_lost_;
    ++lost_total_;
  }
  lines_.push_back(std::move(line));
}

size_t SubscriberQueue::Gather(iovec* iov, size_t max_iov) {
  if (max_iov == 0) return 0;
  if (inflight_offset_ == inflight_.size()) {
    // At a line boundary: the notice of what was dropped comes before the next line.
    inflight_offset_ = 0;
    if (pending_lost_) {
      inflight_ = LostNotice("subscriber", pending_lost_);
      pending_lost_ = 0;
    } else if (!lines_.empty()) {
      inflight_ = std::move(lines_.front());
      lines_.pop_front();
    } else {
      inflight_.clear();
      return 0;
    }
  }
  size_t n = 0;
  iov[n++] = {inflight_.data() + inflight_offset_, inflight_.size() - inflight_offset_};
  if (pending_lost_) return n;  // the lines behind were queued after a drop: the notice goes first
  for (size_t i = 0; i < lines_.size() && n < max_iov; ++i) iov[n++] = {lines_[i].data(), lines_[i].size()};
  return n;
}

void SubscriberQueue::Consumed(size_t bytes, std::vector<std::string>* spent) {
  auto recycle = [spent](std::string& line) {
    if (!spent) return;
    line.clear();
    spent->push_back(std::move(line));
  };
  size_t in_flight_left = inflight_.size() - inflight_offset_;
  if (bytes < in_flight_left) {
    inflight_offset_ += bytes;
    return;
  }
  bytes -= in_flight_left;
  recycle(inflight_);
  inflight_.clear();
  inflight_offset_ = 0;
  // Whole lines behind it went too; a line cut short becomes the one in flight.
  while (bytes > 0 && !lines_.empty()) {
    std::string& front = lines_.front();
    if (bytes < front.size()) {
      inflight_ = std::move(front);
      inflight_offset_ = bytes;
      lines_.pop_front();
      return;
    }
    bytes -= front.size();
    recycle(front);
    lines_.pop_front();
  }
}

}  // namespace stockade

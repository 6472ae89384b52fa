// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/event_hub.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "stockade/os/errno_status.h"

namespace stockade {

// A connection: first it sends its request, then it is a subscriber.
struct EventHub::Subscriber {
  explicit Subscriber(int fd, size_t capacity) : fd(fd), queue(capacity) {}
  ScopedFd fd;
  std::string request;  // until its newline
  bool subscribed = false;
  bool follow = false;
  bool writable_wanted = false;  // EPOLLOUT is in its interest set
  EventFilter filter;
  SubscriberQueue queue;
};

namespace {

constexpr size_t kMaxRequest = 64 << 10;
constexpr int kMaxEpollEvents = 64;
constexpr int kBatchRecords = 2048;
constexpr size_t kMaxIov = 1024;  // IOV_MAX
// Written lines kept for their memory: at a million lines a second, malloc and free showed up first in a profile.
constexpr size_t kMaxSpareLines = 8192;
// How long the ring buffer waits for the agent's first context (Docker may be slow to answer).
constexpr int64_t kContextWaitNs = 10'000'000'000;

int64_t ClockNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

}  // namespace

std::string DefaultEventSocketPath(const std::string& instance) {
  return absl::StrCat("/run/stockade/", instance, ".events.sock");
}

absl::StatusOr<std::unique_ptr<EventHub>> EventHub::Start(int ringbuf_fd, EventHubOptions options) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options.socket_path.size() >= sizeof(addr.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("event socket path too long: ", options.socket_path));
  std::memcpy(addr.sun_path, options.socket_path.c_str(), options.socket_path.size() + 1);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(options.socket_path).parent_path(), ec);

  ScopedFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener.valid()) return ErrnoStatus(errno, "create event socket");
  unlink(options.socket_path.c_str());  // a dead agent's; the instance lock keeps live ones apart
  mode_t old_mask = umask(0077);         // root only, from the first moment
  int bound = bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  umask(old_mask);
  if (bound != 0) return ErrnoStatus(errno, absl::StrCat("bind event socket ", options.socket_path));
  if (listen(listener.get(), 16) != 0) return ErrnoStatus(errno, absl::StrCat("listen on ", options.socket_path));

  ScopedFd epoll(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) return ErrnoStatus(errno, "epoll_create1 for events");
  ScopedFd wakeup(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wakeup.valid()) return ErrnoStatus(errno, "eventfd for events");

  std::unique_ptr<EventHub> hub(new EventHub(std::move(options), std::move(listener), std::move(epoll), std::move(wakeup)));
  auto reader = EventReader::Open(ringbuf_fd, [hub = hub.get()](const drop_event& e) { hub->OnEvent(e); });
  if (!reader.ok()) return reader.status();
  hub->reader_ = std::move(*reader);
  // The ring buffer is read once the agent knows what to enrich events with
  // (SetContext), or after a while without: a restarted agent finds the
  // records of its downtime there and must name their containers.
  for (int fd : {hub->listener_.get(), hub->wakeup_.get()}) {
    epoll_event ev{.events = EPOLLIN, .data = {.fd = fd}};
    if (epoll_ctl(hub->epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return ErrnoStatus(errno, "epoll_ctl for events");
  }
  hub->thread_ = std::thread([h = hub.get()] { h->Loop(); });
  return hub;
}

EventHub::EventHub(EventHubOptions options, ScopedFd listener, ScopedFd epoll, ScopedFd wakeup)
    : options_(std::move(options)),
      listener_(std::move(listener)),
      epoll_(std::move(epoll)),
      wakeup_(std::move(wakeup)) {}

EventHub::~EventHub() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(wakeup_.get(), &one, sizeof(one));
    thread_.join();
  }
  unlink(options_.socket_path.c_str());
}

void EventHub::SetContext(std::shared_ptr<const EventContext> context) {
  {
    std::lock_guard<std::mutex> hold(context_mu_);
    context_ = std::move(context);
  }
  StartReading();
}

void EventHub::StartReading() {
  if (reading_.exchange(true)) return;
  epoll_event ev{.events = EPOLLIN, .data = {.fd = reader_->epoll_fd()}};
  (void)epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, reader_->epoll_fd(), &ev);
}

EventHubStats EventHub::Stats() const {
  EventHubStats stats{.received = received_,
                      .drops_received = drops_received_,
                      .malformed = reader_ ? reader_->malformed() : 0,
                      .subscriber_lost = subscriber_lost_,
                      .subscribers = subscribers_};
  for (int verdict = 0; verdict < VERDICT_MAX; ++verdict)
    for (int dir = 0; dir < DIR_MAX; ++dir) stats.flows[verdict][dir] = flows_[verdict][dir];
  return stats;
}

int64_t EventHub::RealtimeNs(uint64_t monotonic_ns) {
  // The programs stamp CLOCK_MONOTONIC; the offset to wall time moves when the clock is set, so it is re-read.
  int64_t now = ClockNs(CLOCK_MONOTONIC);
  if (now - offset_refreshed_ns_ > 1000000000) {
    realtime_offset_ns_ = ClockNs(CLOCK_REALTIME) - ClockNs(CLOCK_MONOTONIC);
    offset_refreshed_ns_ = now;
  }
  return static_cast<int64_t>(monotonic_ns) + realtime_offset_ns_;
}

void EventHub::Loop() {
  epoll_event ready[kMaxEpollEvents];
  const int64_t read_anyway_at = ClockNs(CLOCK_MONOTONIC) + kContextWaitNs;
  for (;;) {
    if (!reading_ && ClockNs(CLOCK_MONOTONIC) >= read_anyway_at) StartReading();
    // With records left over from a full batch, look at the sockets and come straight back.
    int n = epoll_wait(epoll_.get(), ready, kMaxEpollEvents, ring_backlog_ ? 0 : reading_ ? -1 : 500);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    bool ring_ready = ring_backlog_;
    for (int i = 0; i < n; ++i) {
      int fd = ready[i].data.fd;
      if (fd == wakeup_.get()) return;
      if (fd == listener_.get()) {
        Accept();
      } else if (fd == reader_->epoll_fd()) {
        ring_ready = true;
      } else if (ready[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
        OnClientReadable(fd);
      }
    }
    if (ring_ready) {
      {
        std::lock_guard<std::mutex> hold(context_mu_);
        batch_context_ = context_;
      }
      // A bounded batch, then the subscribers get what it made: under a steady
      // stream an unbounded drain would fill their queues before any write.
      auto handed = reader_->DrainUpTo(kBatchRecords);
      ring_backlog_ = handed.ok() && *handed == kBatchRecords;
    }
    // Everything queued goes out now; a full socket waits for EPOLLOUT.
    std::vector<int> fds;
    for (auto& [fd, s] : clients_) fds.push_back(fd);
    for (int fd : fds) {
      auto it = clients_.find(fd);
      if (it != clients_.end() && it->second->subscribed) Flush(*it->second);
    }
  }
}

void EventHub::OnEvent(const drop_event& raw) {
  received_.fetch_add(1, std::memory_order_relaxed);
  if (raw.verdict != VERDICT_FORWARDED) drops_received_.fetch_add(raw.count, std::memory_order_relaxed);
  // The reader checked the size, not the values: a record of another build must not index past the table.
  if (raw.verdict < VERDICT_MAX && raw.direction < DIR_MAX)
    flows_[raw.verdict][raw.direction].fetch_add(raw.count, std::memory_order_relaxed);
  EventRecord record{.raw = raw, .time_ns = RealtimeNs(raw.timestamp_ns), .context = batch_context_};
  // Formatted once for all who want it; the last of them gets the line itself.
  std::string line = TakeSpareLine();
  Subscriber* last = nullptr;
  auto hand_over = [&](Subscriber& s, bool copy) {
    uint64_t lost_before = s.queue.lost_total();
    s.queue.Push(copy ? line : std::move(line));
    subscriber_lost_.fetch_add(s.queue.lost_total() - lost_before, std::memory_order_relaxed);
  };
  for (auto& [fd, s] : clients_) {
    if (!s->subscribed || !s->follow || !s->filter.Matches(record)) continue;
    if (line.empty()) {
      AppendEventJson(record, line);
      line.push_back('\n');
    }
    if (last) hand_over(*last, /*copy=*/true);
    last = s.get();
  }
  if (last) {
    hand_over(*last, /*copy=*/false);
  } else {
    spare_lines_.push_back(std::move(line));
  }
  if (options_.history == 0) return;
  if (history_.size() >= options_.history) history_.pop_front();
  history_.push_back(std::move(record));
}

std::string EventHub::TakeSpareLine() {
  if (spare_lines_.empty()) return std::string();
  std::string line = std::move(spare_lines_.back());
  spare_lines_.pop_back();
  line.clear();
  return line;
}

void EventHub::Accept() {
  for (;;) {
    int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    int bytes = options_.socket_buffer_bytes;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) != 0)
      (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    clients_.emplace(fd, std::make_unique<Subscriber>(fd, options_.subscriber_queue));
    Watch(fd, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_ADD);
  }
}

void EventHub::Watch(int fd, uint32_t events, int op) {
  epoll_event ev{.events = events, .data = {.fd = fd}};
  (void)epoll_ctl(epoll_.get(), op, fd, &ev);
}

void EventHub::Close(int fd) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  if (it->second->subscribed) subscribers_.fetch_sub(1, std::memory_order_relaxed);
  clients_.erase(it);
}

void EventHub::OnClientReadable(int fd) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Subscriber& s = *it->second;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      if (s.subscribed) continue;  // nothing more is asked of a subscriber; what it sends is ignored
      s.request.append(buf, n);
      size_t newline = s.request.find('\n');
      if (newline != std::string::npos) {
        Subscribe(s, s.request.substr(0, newline));
        if (!clients_.contains(fd)) return;
      } else if (s.request.size() > kMaxRequest) {
        Close(fd);
        return;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    Close(fd);  // the peer went away
    return;
  }
}

void EventHub::Subscribe(Subscriber& s, const std::string& request_line) {
  nlohmann::json request = nlohmann::json::parse(request_line, nullptr, /*allow_exceptions=*/false);
  absl::StatusOr<EventFilter> filter = absl::InvalidArgumentError("the request is not a JSON object");
  if (request.is_object()) filter = EventFilter::FromJson(request.value("filter", nlohmann::json()));
  s.subscribed = true;
  subscribers_.fetch_add(1, std::memory_order_relaxed);
  if (!filter.ok()) {
    s.queue.Push(nlohmann::json({{"type", "error"}, {"error", std::string(filter.status().message())}}).dump() + "\n");
    s.follow = false;
    Flush(s);
    return;
  }
  s.filter = std::move(*filter);
  s.follow = request.value("follow", false);
  uint64_t last = request.value("last", uint64_t{0});
  int64_t since_ns = request.value("since_ns", int64_t{0});
  s.queue.Push(nlohmann::json({{"type", "hello"}, {"pid", getpid()}, {"history", history_.size()}}).dump() + "\n");
  // The newest `last` matches at or after `since`, oldest first.
  std::vector<const EventRecord*> matches;
  if (last > 0 || since_ns > 0) {
    for (auto it = history_.rbegin(); it != history_.rend(); ++it) {
      if (since_ns > 0 && it->time_ns < since_ns) break;
      if (!s.filter.Matches(*it)) continue;
      matches.push_back(&*it);
      if (last > 0 && matches.size() >= last) break;
    }
  }
  for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
    std::string line;
    AppendEventJson(**it, line);
    line.push_back('\n');
    s.queue.Push(std::move(line));
  }
  s.queue.Push("{\"type\":\"history_end\"}\n");
  Flush(s);
}

void EventHub::Flush(Subscriber& s) {
  int fd = s.fd.get();
  iovec iov[kMaxIov];
  for (;;) {
    size_t n = s.queue.Gather(iov, kMaxIov);
    if (n == 0) break;
    ssize_t written = writev(fd, iov, static_cast<int>(n));
    if (written < 0 && errno == EINTR) continue;
    if (written < 0 && errno == EAGAIN) {
      if (!s.writable_wanted) Watch(fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT, EPOLL_CTL_MOD);
      s.writable_wanted = true;
      return;
    }
    if (written <= 0) {
      Close(fd);
      return;
    }
    s.queue.Consumed(static_cast<size_t>(written), &spare_lines_);
    if (spare_lines_.size() > kMaxSpareLines) spare_lines_.resize(kMaxSpareLines);
  }
  if (s.writable_wanted) Watch(fd, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
  s.writable_wanted = false;
  if (!s.follow) Close(fd);  // a history request ends here
}

}  // namespace stockade

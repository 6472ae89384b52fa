// SPDX-License-Identifier: Apache-2.0
#include "tools/microbench/event_bench.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "maps/abi.h"
#include "stockade/agent/control_socket.h"
#include "stockade/agent/event_hub.h"
#include "stockade/datapath/datapath.h"
#include "stockade/os/errno_status.h"
#include "stockade/os/process.h"
#include "stockade/os/scoped_fd.h"
#include "testlib/packet_builder.h"
#include "tools/microbench/common.h"

namespace stockade::microbench {
namespace {

// A process of the bench's own, stopped by pid when it goes.
class Child {
 public:
  // `stdout_pipe`: its output is read through out_fd(); otherwise it goes to /dev/null.
  static absl::StatusOr<std::unique_ptr<Child>> Start(std::vector<std::string> args, bool stdout_pipe,
                                                      const std::string& log_path) {
    int fds[2] = {-1, -1};
    if (stdout_pipe && pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
    ScopedFd read_end(fds[0]), write_end(fds[1]);
    if (stdout_pipe) fcntl(read_end.get(), F_SETPIPE_SZ, 1 << 20);  // fewer wakeups at a million lines a second
    ScopedFd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!log.valid()) return ErrnoStatus(errno, absl::StrCat("open ", log_path));
    absl::StatusOr<pid_t> pid = SpawnProcess(args, {.stdout_fd = write_end.get(), .stderr_fd = log.get()});
    if (!pid.ok()) return pid.status();
    return std::unique_ptr<Child>(new Child(*pid, std::move(read_end)));
  }

  ~Child() { Stop(SIGTERM); }

  // Signals it and waits for it.
  void Stop(int signal) {
    if (pid_ <= 0) return;
    kill(pid_, signal);
    absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (waitpid(pid_, nullptr, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    pid_ = -1;
  }

  pid_t pid() const { return pid_; }
  int out_fd() const { return out_.get(); }

  // Its user plus system CPU time so far.
  absl::Duration CpuTime() const {
    std::ifstream stat(absl::StrCat("/proc/", pid_, "/stat"));
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    size_t close_paren = text.rfind(')');
    if (close_paren == std::string::npos) return absl::ZeroDuration();
    std::vector<std::string> fields;
    std::string field;
    for (char c : text.substr(close_paren + 2)) {
      if (c == ' ') {
        fields.push_back(field);
        field.clear();
      } else {
        field.push_back(c);
      }
    }
    // Fields 14 and 15 of stat(5), counted from the state field (3) here.
    double ticks = std::stod(fields.at(11)) + std::stod(fields.at(12));
    return absl::Seconds(ticks / static_cast<double>(sysconf(_SC_CLK_TCK)));
  }

 private:
  Child(pid_t pid, ScopedFd out) : pid_(pid), out_(std::move(out)) {}
  pid_t pid_;
  ScopedFd out_;
};

// Reads the tail's JSON lines on a thread of its own and keeps the count.
class TailReader {
 public:
  explicit TailReader(int fd) : fd_(fd), thread_([this] { Run(); }) {}
  ~TailReader() {
    stop_ = true;
    thread_.join();
  }
  uint64_t events() const { return events_; }
  uint64_t drops() const { return drops_; }  // the counts the events carry
  uint64_t lost() const { return lost_; }    // what the agent told the tail it dropped from its queue
  absl::Time last_line_at() const { return absl::FromUnixNanos(last_line_ns_); }

 private:
  static uint64_t NumberAfter(std::string_view line, std::string_view key) {
    size_t at = line.find(key);
    if (at == std::string_view::npos) return 0;
    uint64_t n = 0;
    for (size_t i = at + key.size(); i < line.size() && line[i] >= '0' && line[i] <= '9'; ++i) n = n * 10 + (line[i] - '0');
    return n;
  }

  void Run() {
    std::string pending;
    std::vector<char> buf(1 << 20);
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      ssize_t n = read(fd_, buf.data(), buf.size());
      if (n <= 0) return;
      pending.append(buf.data(), n);
      size_t start = 0;
      for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string_view line(pending.data() + start, nl - start);
        if (line.starts_with("{\"type\":\"event\"")) {
          events_.fetch_add(1, std::memory_order_relaxed);
          drops_.fetch_add(NumberAfter(line, "\"count\":"), std::memory_order_relaxed);
        } else if (line.starts_with("{\"type\":\"lost\"")) {
          lost_.fetch_add(NumberAfter(line, "\"count\":"), std::memory_order_relaxed);
        }
      }
      pending.erase(0, start);
      last_line_ns_ = absl::ToUnixNanos(absl::Now());
    }
  }

  int fd_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> events_{0}, drops_{0}, lost_{0};
  std::atomic<int64_t> last_line_ns_{0};
  std::thread thread_;
};

std::string SiblingBinary(const std::string& name) {
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / name).string();
}

// The bench's own agent, its pinned datapath, and one tail.
struct Pipeline {
  std::string instance;
  std::string state_dir;
  std::unique_ptr<Child> agent;
  std::unique_ptr<Child> tail;
  std::unique_ptr<TailReader> reader;
  std::unique_ptr<Datapath> datapath;

  ~Pipeline() {
    reader.reset();
    tail.reset();
    agent.reset();
    datapath.reset();
    (void)UninstallInstance(instance);
    std::error_code ec;
    std::filesystem::remove_all(state_dir, ec);
    std::filesystem::remove(absl::StrCat("/run/stockade/", instance, ".sock"), ec);
    std::filesystem::remove(absl::StrCat("/run/stockade/", instance, ".lock"), ec);
    std::filesystem::remove(state_dir + ".log", ec);
  }

  absl::StatusOr<nlohmann::json> Status() const {
    return ControlRequest(absl::StrCat("/run/stockade/", instance, ".sock"), {{"command", "status"}});
  }
};

absl::StatusOr<std::unique_ptr<Pipeline>> StartPipeline() {
  auto p = std::make_unique<Pipeline>();
  p->instance = absl::StrCat("evbench", getpid());
  p->state_dir = absl::StrCat("/tmp/stockade-", p->instance);
  std::string log = p->state_dir + ".log";
  auto agent = Child::Start({SiblingBinary("stockaded"), "--no-docker", "--no-metrics", "--instance", p->instance,
                             "--state-dir", p->state_dir, "--resync", "3600"},
                            false, log);
  if (!agent.ok()) return agent.status();
  p->agent = std::move(*agent);
  absl::Status ready = absl::DeadlineExceededError("stockaded did not answer in 20 s; see " + log);
  for (absl::Time deadline = absl::Now() + absl::Seconds(20); absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(100))) {
    if (p->Status().ok()) {
      ready = absl::OkStatus();
      break;
    }
  }
  if (!ready.ok()) return ready;
  auto datapath = Datapath::Load({.instance = p->instance});
  if (!datapath.ok()) return datapath.status();
  p->datapath = std::move(*datapath);
  auto tail = Child::Start({SiblingBinary("stockade-tail"), "--instance", p->instance, "--follow", "-o", "json"}, true,
                           log);
  if (!tail.ok()) return tail.status();
  p->tail = std::move(*tail);
  p->reader = std::make_unique<TailReader>(p->tail->out_fd());
  for (absl::Time deadline = absl::Now() + absl::Seconds(10); absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(50))) {
    auto status = p->Status();
    if (status.ok() && (*status)["events"]["subscribers"] == 1) return p;
  }
  return absl::DeadlineExceededError("stockade-tail did not subscribe in 10 s; see " + log);
}

// A SYN on an interface that is no endpoint: dropped (ENDPOINT_UNKNOWN), one event.
std::vector<uint8_t> DeniedFrame() {
  using namespace stockade::testing;
  return PacketBuilder()
      .Ethernet()
      .Ipv4({.src = Ipv4("10.213.9.1"), .dst = Ipv4("10.213.9.2")})
      .Tcp({.sport = 40000, .dport = 5432, .flags = kTcpSyn})
      .Build();
}

absl::Status Produce(const Datapath& dp, const std::vector<uint8_t>& frame, uint32_t repeat) {
  std::vector<uint8_t> out(frame.size() + 256);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = out.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()), .data_size_out = static_cast<uint32_t>(out.size()),
              .repeat = static_cast<int>(repeat));
  if (bpf_prog_test_run_opts(dp.tc_ingress_fd(), &opts) != 0) return ErrnoStatus(errno, "BPF_PROG_TEST_RUN");
  if (static_cast<int>(opts.retval) != 2 /* TC_ACT_SHOT */)
    return absl::InternalError(absl::StrCat("the bench frame was not dropped (retval ", opts.retval, ")"));
  return absl::OkStatus();
}

struct PipelineRun {
  uint64_t produced = 0, delivered = 0, lost_ringbuf = 0, lost_agent = 0, lost_subscriber = 0;
  absl::Duration elapsed;       // first record made to last line read (includes the queues' depth at the end)
  absl::Duration produce_time;  // making them
  double agent_cpu = 0, tail_cpu = 0;  // share of one core over `elapsed`
  bool accounted() const { return produced == delivered + lost_ringbuf + lost_agent + lost_subscriber; }
  double delivered_per_second() const { return delivered / absl::ToDoubleSeconds(elapsed); }
};

// `total` records, in batches of `batch`; `per_second` 0: as fast as the kernel makes them.
absl::StatusOr<PipelineRun> RunPipeline(Pipeline& p, uint64_t total, uint32_t batch, double per_second) {
  const std::vector<uint8_t> frame = DeniedFrame();
  PipelineRun run;
  const uint64_t events_before = p.reader->events(), lost_before = p.reader->lost();
  // The agent reports the ring buffer's losses (the kernel's counter) and its own.
  auto status_before = p.Status();
  if (!status_before.ok()) return status_before.status();
  const uint64_t ringbuf_before = (*status_before)["events"]["lost"]["ringbuf"];
  const uint64_t malformed_before = (*status_before)["events"]["lost"]["agent"];
  absl::Duration agent_cpu0 = p.agent->CpuTime(), tail_cpu0 = p.tail->CpuTime();
  const absl::Time start = absl::Now();
  for (uint64_t made = 0; made < total; made += batch) {
    if (per_second > 0) {
      absl::Time due = start + absl::Seconds(static_cast<double>(made) / per_second);
      if (absl::Now() < due) absl::SleepFor(due - absl::Now());
    }
    if (absl::Status s = Produce(*p.datapath, frame, batch); !s.ok()) return s;
    run.produced += batch;
  }
  run.produce_time = absl::Now() - start;
  // Done when every record is shown or counted lost, or nothing moves for two seconds.
  uint64_t last_seen = 0;
  absl::Time moved = absl::Now();
  for (;;) {
    run.delivered = p.reader->events() - events_before;
    run.lost_subscriber = p.reader->lost() - lost_before;
    auto status = p.Status();
    if (status.ok()) {
      run.lost_ringbuf = uint64_t{(*status)["events"]["lost"]["ringbuf"]} - ringbuf_before;
      run.lost_agent = uint64_t{(*status)["events"]["lost"]["agent"]} - malformed_before;
    }
    if (run.accounted()) break;
    uint64_t seen = run.delivered + run.lost_subscriber + run.lost_ringbuf;
    if (seen != last_seen) {
      last_seen = seen;
      moved = absl::Now();
    }
    if (absl::Now() - moved > absl::Seconds(2)) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  run.elapsed = std::max(p.reader->last_line_at(), start + run.produce_time) - start;
  run.agent_cpu = absl::FDivDuration(p.agent->CpuTime() - agent_cpu0, run.elapsed);
  run.tail_cpu = absl::FDivDuration(p.tail->CpuTime() - tail_cpu0, run.elapsed);
  return run;
}

void PrintRun(const char* what, const PipelineRun& r) {
  std::printf("  %-14s produced %8llu in %5.3f s | delivered %8llu (%4.2f M/s, last %3.0f ms after the last made) | "
              "lost ringbuf %llu agent %llu subscriber %llu | %s | agent %3.0f%% tail %3.0f%% of a core\n",
              what, static_cast<unsigned long long>(r.produced), absl::ToDoubleSeconds(r.produce_time),
              static_cast<unsigned long long>(r.delivered), r.delivered_per_second() / 1e6,
              absl::ToDoubleMilliseconds(r.elapsed - r.produce_time),
              static_cast<unsigned long long>(r.lost_ringbuf), static_cast<unsigned long long>(r.lost_agent),
              static_cast<unsigned long long>(r.lost_subscriber), r.accounted() ? "all accounted" : "UNACCOUNTED",
              100 * r.agent_cpu, 100 * r.tail_cpu);
}

absl::Status PipelineBench(Pipeline& p, bool quick) {
  if (absl::Status s = p.datapath->WriteConfig({.event_interval_ns = 0, .flags = STOCKADE_CONFIG_F_SET}); !s.ok())
    return s;
  std::printf("\npipeline: one record per drop, ring buffer -> stockaded -> stockade-tail -o json -> this bench\n");
  const int rounds = quick ? 1 : 5;
  const uint64_t total = quick ? 500'000 : 3'000'000;
  Samples paced, flat_out;  // 1M/s and 2M/s
  bool all_accounted = true, paced_lossless = true;
  for (int round = 0; round < rounds; ++round) {
    for (size_t item : InterleavedOrder(2, round)) {
      // Made in bursts of 10k every 10 ms (20k for 2M/s): the ring buffer holds ~190k records.
      const double rate = item == 0 ? 1e6 : 2e6;
      auto r = RunPipeline(p, total, item == 0 ? 10'000 : 20'000, rate);
      if (!r.ok()) return r.status();
      PrintRun(item == 0 ? "paced at 1M/s" : "paced at 2M/s", *r);
      all_accounted &= r->accounted();
      (item == 0 ? paced : flat_out).Add(r->delivered_per_second() / 1e6);
      if (item == 0) paced_lossless &= r->lost_ringbuf + r->lost_agent + r->lost_subscriber == 0;
    }
  }
  std::printf("  delivered, M events/s (median, min-max over %d rounds): paced at 1M/s %s; paced at 2M/s %s\n",
              rounds, paced.Format(2).c_str(), flat_out.Format(2).c_str());
  // Sustaining 1M/s means keeping up: every event made at that rate reaches the tail. The rate
  // above also counts the time the last batch takes to come through the queues after the last is made.
  std::printf("  target: sustain 1M events/s with every loss accounted: %s (every 1M/s run delivered all: %s; "
              "every run accounted: %s)\n",
              paced_lossless && all_accounted ? "PASS" : "FAIL", paced_lossless ? "yes" : "no",
              all_accounted ? "yes" : "NO");
  return absl::OkStatus();
}

absl::Status FloodBench(Pipeline& p, bool quick) {
  if (absl::Status s = p.datapath->WriteConfig(
          {.event_interval_ns = STOCKADE_DEFAULT_EVENT_INTERVAL_NS, .flags = STOCKADE_CONFIG_F_SET});
      !s.ok())
    return s;
  if (absl::Status s = p.datapath->event_agg().Clear(); !s.ok()) return s;
  const double rate = 600'000;
  const absl::Duration length = quick ? absl::Seconds(3) : absl::Seconds(10);
  std::printf("\nflood: %.0fk denied packets/s toward one endpoint for %s, aggregation on (one record per flow "
              "per %.0f s)\n",
              rate / 1e3, absl::FormatDuration(length).c_str(), STOCKADE_DEFAULT_EVENT_INTERVAL_NS / 1e9);
  const uint64_t drops_before = p.reader->drops();
  auto counter = [&] {
    auto c = p.datapath->Counter(DROP_ENDPOINT_UNKNOWN, DIR_EGRESS, VERDICT_DROPPED);
    return c.ok() ? c->packets : 0;
  };
  const uint64_t counted_before = counter();
  const uint64_t total = static_cast<uint64_t>(rate * absl::ToDoubleSeconds(length));
  auto run = RunPipeline(p, total, 6'000, rate);
  if (!run.ok()) return run.status();
  // The drops after the last record wait in the aggregate until the flow's next drop after the interval.
  absl::SleepFor(absl::Seconds(1.2));
  if (absl::Status s = Produce(*p.datapath, DeniedFrame(), 1); !s.ok()) return s;
  const uint64_t flood = counter() - counted_before;
  for (absl::Time deadline = absl::Now() + absl::Seconds(5);
       p.reader->drops() - drops_before < flood && absl::Now() < deadline;)
    absl::SleepFor(absl::Milliseconds(20));
  const uint64_t shown = p.reader->drops() - drops_before;
  const double achieved = static_cast<double>(run->produced) / absl::ToDoubleSeconds(run->produce_time);
  std::printf("  achieved %.0fk packets/s; agent CPU %.2f%% of one core (target < 5%%: %s); records %llu\n",
              achieved / 1e3, 100 * run->agent_cpu, run->agent_cpu < 0.05 ? "PASS" : "FAIL",
              static_cast<unsigned long long>(run->delivered));
  std::printf("  drops counted by the datapath %llu; drops the events' counts add up to %llu: %s\n",
              static_cast<unsigned long long>(flood), static_cast<unsigned long long>(shown),
              shown == flood ? "the true count" : "MISMATCH");
  if (achieved < 500'000) std::printf("  note: the flood fell short of 500k packets/s on this machine\n");
  return absl::OkStatus();
}

}  // namespace

absl::Status RunEventBench(bool quick) {
  auto pipeline = StartPipeline();
  if (!pipeline.ok()) return pipeline.status();
  // The producer keeps one core; the agent, the tail and the reader of its output share the other.
  // Pinned after they started, so they do not inherit it.
  if (absl::Status s = PinToCpu(0); !s.ok()) return s;
  if (absl::Status s = PipelineBench(**pipeline, quick); !s.ok()) return s;
  return FloodBench(**pipeline, quick);
}

}  // namespace stockade::microbench

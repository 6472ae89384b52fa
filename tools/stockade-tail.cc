// SPDX-License-Identifier: Apache-2.0
//
// stockade-tail: drop events (and, when asked, allowed new flows) as they
// happen, from stockaded's event socket.
// The filters travel to the agent, which applies them before it formats or
// queues anything. See docs/events.md.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "stockade/agent/event_hub.h"
#include "stockade/events/event_filter.h"
#include "stockade/events/event_text.h"
#include "stockade/os/scoped_fd.h"
#include "stockade/version/version.h"

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

// Exit codes, as the usage says.
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNotRunning = 3;
constexpr int kExitPermission = 4;

constexpr char kUsage[] = R"(Usage: stockade-tail [options]
Shows drop (and audit) events from stockaded as they happen; with
--verdict forwarded or --all-verdicts, the flows it allowed too.

Options:
  --instance NAME        the agent's instance (default: default)
  --socket PATH          its event socket (default /run/stockade/NAME.events.sock)
  -f, --follow           keep showing new events (the default on a terminal)
  --no-follow            show what is in the agent's history and exit
  --last N               start with the newest N matching events of the history
  --since DURATION       start with the history's events of the last DURATION (30s, 5m, 1h)
  --from SELECTOR        source container: a name, an id prefix, or labels (tier=web,app=shop)
  --to SELECTOR          destination container
  --container SELECTOR   either end
  --identity N           either end's numeric identity
  --reason NAME          e.g. POLICY_DENIED, SPOOFED_SOURCE (stockadectl status lists them)
  --verdict V            dropped, audit or forwarded (an allowed new flow);
                         default: dropped and audit
  --all-verdicts         every verdict: drops, audits and allowed new flows
  --port N               either end's port
  --protocol P           tcp, udp, icmp, icmpv6, arp or a number
  --direction D          ingress or egress
  -o, --output FORMAT    text (default) or json: one object per line
  --color WHEN           auto (default: on a terminal), always, never
  -h, --help             this text
  --version              print the version and the git revision, exit
Filters repeat: values of one filter are alternatives; different filters must all match.
Exit status: 0 done, 1 error, 2 usage, 3 stockaded not running, 4 permission denied.
)";

struct Options {
  std::string socket_path;
  bool follow = false;
  bool follow_set = false;
  uint64_t last = 0;
  absl::Duration since = absl::ZeroDuration();
  bool json = false;
  bool colour = false;
  stockade::EventFilter filter;
};

[[noreturn]] void UsageError(const std::string& message) {
  std::fprintf(stderr, "stockade-tail: %s\n(stockade-tail --help lists the options)\n", message.c_str());
  std::exit(kExitUsage);
}

template <typename T>
void AddParsed(std::vector<T>& list, const absl::StatusOr<T>& value, const std::string& flag) {
  if (!value.ok()) UsageError(absl::StrCat(flag, ": ", value.status().message()));
  list.push_back(*value);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  std::string instance = "default", colour = "auto", output = "text";
  bool all_verdicts = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) UsageError(arg + " needs a value");
      return argv[++i];
    };
    auto number = [&](uint64_t max) {
      std::string text = value();
      uint64_t n = 0;
      if (!absl::SimpleAtoi(text, &n) || n > max) UsageError(absl::StrCat(arg, " takes a number up to ", max));
      return n;
    };
    if (arg == "--instance") {
      instance = value();
    } else if (arg == "--socket") {
      o.socket_path = value();
    } else if (arg == "-f" || arg == "--follow") {
      o.follow = o.follow_set = true;
    } else if (arg == "--no-follow") {
      o.follow = false;
      o.follow_set = true;
    } else if (arg == "--last") {
      o.last = number(1u << 30);
      if (o.last == 0) UsageError("--last takes a positive number");
    } else if (arg == "--since") {
      std::string text = value();
      if (!absl::ParseDuration(text, &o.since) || o.since <= absl::ZeroDuration())
        UsageError(absl::StrCat("--since takes a duration such as 30s, 5m or 1h, not '", text, "'"));
    } else if (arg == "--from" || arg == "--to" || arg == "--container") {
      auto& list = arg == "--from" ? o.filter.from : arg == "--to" ? o.filter.to : o.filter.container;
      AddParsed(list, stockade::WorkloadSelector::Parse(value()), arg);
    } else if (arg == "--identity") {
      o.filter.identities.push_back(static_cast<uint32_t>(number(UINT32_MAX)));
    } else if (arg == "--reason") {
      AddParsed(o.filter.reasons, stockade::ParseDropReason(value()), arg);
    } else if (arg == "--verdict") {
      AddParsed(o.filter.verdicts, stockade::ParseVerdict(value()), arg);
    } else if (arg == "--all-verdicts") {
      // Not `--all`: to a `hubble observe` user that means the whole history.
      all_verdicts = true;
    } else if (arg == "--port") {
      o.filter.ports.push_back(static_cast<uint16_t>(number(65535)));
    } else if (arg == "--protocol") {
      AddParsed(o.filter.protocols, stockade::ParseProtocol(value()), arg);
    } else if (arg == "--direction") {
      auto d = stockade::ParseDirection(value());
      if (!d.ok()) UsageError(absl::StrCat(arg, ": ", d.status().message()));
      o.filter.direction = *d;
    } else if (arg == "-o" || arg == "--output") {
      output = value();
      if (output != "text" && output != "json") UsageError("--output is text or json, not '" + output + "'");
    } else if (arg == "--color" || arg == "--colour") {
      colour = value();
      if (colour != "auto" && colour != "always" && colour != "never")
        UsageError("--color is auto, always or never, not '" + colour + "'");
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--version") {
      std::exit(stockade::PrintVersion("stockade-tail"));
    } else {
      UsageError(absl::StrCat("unknown option '", arg, "'"));
    }
  }
  if (all_verdicts) {
    if (!o.filter.verdicts.empty()) UsageError("--all-verdicts and --verdict exclude each other");
    o.filter.verdicts = {VERDICT_DROPPED, VERDICT_AUDIT, VERDICT_FORWARDED};
  }
  if (o.socket_path.empty()) o.socket_path = stockade::DefaultEventSocketPath(instance);
  bool terminal = isatty(STDOUT_FILENO);
  if (!o.follow_set) o.follow = terminal;
  // Without a start point a one-shot run shows the newest events, as `hubble observe` does.
  if (!o.follow && o.last == 0 && o.since == absl::ZeroDuration()) o.last = 20;
  o.json = output == "json";
  o.colour = !o.json && (colour == "always" || (colour == "auto" && terminal));
  return o;
}

// The connection's outcome, and for a refused one, why.
struct Connected {
  stockade::ScopedFd fd;
  int exit_code = 0;
  std::string error;
};

Connected Connect(const std::string& path) {
  Connected c;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return {stockade::ScopedFd(), kExitUsage, "socket path too long: " + path};
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  c.fd = stockade::ScopedFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (connect(c.fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) return c;
  int err = errno;
  c.fd.Reset();
  if (err == ENOENT || err == ECONNREFUSED) {
    c.exit_code = kExitNotRunning;
    c.error = absl::StrCat("stockaded is not running (nothing listens at ", path,
                           "); start it, or pass --instance/--socket of the one that runs");
  } else if (err == EACCES || err == EPERM) {
    c.exit_code = kExitPermission;
    c.error = absl::StrCat("permission denied on ", path, ": drop events are root's to read; run as root");
  } else {
    c.exit_code = kExitError;
    c.error = absl::StrCat("connect to ", path, ": ", std::strerror(err));
  }
  return c;
}

bool SendRequest(int fd, const Options& o, bool resumed, int64_t resume_after_ns) {
  nlohmann::json request = {{"filter", o.filter.ToJson()}, {"follow", o.follow}};
  if (!resumed) {
    if (o.last) request["last"] = o.last;
    if (o.since > absl::ZeroDuration()) request["since_ns"] = absl::ToUnixNanos(absl::Now() - o.since);
  } else if (resume_after_ns > 0) {
    // A restarted agent has a new history; ask for what it kept since the last event seen here.
    request["since_ns"] = resume_after_ns + 1;
  }
  std::string line = request.dump() + "\n";
  return send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size());
}

struct Summary {
  uint64_t events = 0;
  uint64_t drops = 0;      // dropped and audited packets
  uint64_t new_flows = 0;  // allowed new flows (forwarded records)
  uint64_t lost = 0;
  absl::flat_hash_map<std::string, uint64_t> by_reason;  // drops each reason stands for; FORWARDED: new flows

  void Print() const {
    std::string line = absl::StrCat("stockade-tail: ", events, " events standing for ", drops, " packets");
    if (new_flows) absl::StrAppend(&line, " and ", new_flows, " allowed new flows");
    std::map<std::string, uint64_t> sorted(by_reason.begin(), by_reason.end());
    for (const auto& [reason, n] : sorted) absl::StrAppend(&line, "\n  ", reason, " ", n);
    if (lost) absl::StrAppend(&line, "\n  lost (not shown): ", lost, " events");
    std::fprintf(stderr, "%s\n", line.c_str());
  }
};

// The value of a string field near the start of a line, without parsing it all:
// the agent writes "type", "time", "verdict" and "reason" first (event_record.h).
std::string_view FieldOf(std::string_view line, std::string_view key) {
  size_t at = line.find(key);
  if (at == std::string_view::npos) return {};
  size_t start = at + key.size();
  size_t end = line.find('"', start);
  return end == std::string_view::npos ? std::string_view() : line.substr(start, end - start);
}

uint64_t CountOf(std::string_view line) {
  std::string_view rest = FieldOf(line, "\"count\":");  // up to the next quote: "<n>,\"packet_length\":"
  uint64_t n = 0;
  size_t i = 0;
  // FieldOf stops at a quote; the digits come first.
  for (; i < rest.size() && rest[i] >= '0' && rest[i] <= '9'; ++i) n = n * 10 + (rest[i] - '0');
  return i ? n : 1;
}

// What became of a line from the agent.
enum class LineUse {
  kPassThrough,  // an event or notice to print as it is (-o json)
  kHandled,      // shown as text, or a message for this tool only
};

// Counts one line from the agent, and shows it unless it passes through.
LineUse HandleLine(std::string_view line, const Options& o, Summary& summary) {
  std::string_view type = FieldOf(line.substr(0, 24), "{\"type\":\"");
  if (type == "event") {
    ++summary.events;
    // "reason" and "count" come early in the line: the searches are short.
    std::string_view reason = FieldOf(line, "\"reason\":\"");
    uint64_t count = CountOf(line);
    // REASON_NONE's name: only a forwarded record carries it.
    (reason == "FORWARDED" ? summary.new_flows : summary.drops) += count;
    // Debian's Abseil has a string_view of its own.
    absl::string_view key(reason.data(), reason.size());
    auto counted = summary.by_reason.find(key);  // no allocation for a reason seen before
    if (counted == summary.by_reason.end()) counted = summary.by_reason.emplace(std::string(reason), 0).first;
    counted->second += count;
    if (o.json) return LineUse::kPassThrough;
    nlohmann::json event = nlohmann::json::parse(line, nullptr, false);
    if (!event.is_discarded()) std::printf("%s\n", stockade::FormatEventText(event, o.colour).c_str());
    return LineUse::kHandled;
  }
  nlohmann::json message = nlohmann::json::parse(line, nullptr, false);
  if (type == "lost") {
    uint64_t n = message.value("count", uint64_t{0});
    summary.lost += n;
    std::fprintf(stderr, "stockade-tail: %llu events lost: this terminal read slower than they came\n",
                 static_cast<unsigned long long>(n));
    if (o.json) return LineUse::kPassThrough;  // a program reading the stream must see the gap too
  } else if (type == "error") {
    std::fprintf(stderr, "stockade-tail: stockaded refused the request: %s\n", message.value("error", "").c_str());
    std::exit(kExitUsage);
  }
  return LineUse::kHandled;
}

// Handles the complete lines at the start of `pending` and removes them.
// Lines that pass through are written in runs, not one by one: at a million
// lines a second the per-call cost of stdio shows.
void HandleLines(std::string& pending, const Options& o, Summary& summary, std::string& last_time) {
  constexpr size_t kNone = std::string::npos;
  size_t start = 0, run = kNone;
  std::string_view last_event;
  auto flush_run = [&](size_t end) {
    if (run != kNone) fwrite_unlocked(pending.data() + run, 1, end - run, stdout);
    run = kNone;
  };
  for (size_t nl; (nl = pending.find('\n', start)) != kNone; start = nl + 1) {
    std::string_view line(pending.data() + start, nl - start);
    LineUse use = HandleLine(line, o, summary);
    if (line.starts_with("{\"type\":\"event\"")) last_event = line;
    if (use == LineUse::kPassThrough) {
      if (run == kNone) run = start;
    } else {
      flush_run(start);
    }
  }
  flush_run(start);
  // Parsed only to resume after a reconnect.
  if (!last_event.empty()) last_time = FieldOf(last_event, "\"time\":\"");
  pending.erase(0, start);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = ParseArgs(argc, argv);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  static char out_buffer[1 << 20];
  std::setvbuf(stdout, out_buffer, _IOFBF, sizeof(out_buffer));

  Summary summary;
  std::string last_time;  // of the newest event shown
  bool resumed = false;
  int exit_code = 0;
  while (!g_stop) {
    Connected c = Connect(o.socket_path);
    if (!c.fd.valid()) {
      if (!resumed) {
        std::fprintf(stderr, "stockade-tail: %s\n", c.error.c_str());
        return c.exit_code;
      }
      absl::SleepFor(absl::Milliseconds(200));  // the agent is restarting; keep trying until Ctrl-C
      continue;
    }
    absl::Time last_seen;
    std::string parse_error;
    int64_t resume_after_ns = 0;
    if (absl::ParseTime(absl::RFC3339_full, last_time, &last_seen, &parse_error))
      resume_after_ns = absl::ToUnixNanos(last_seen);
    if (!SendRequest(c.fd.get(), o, resumed, resume_after_ns)) {
      if (resumed) {
        // A killed agent's socket closes its client connections before its
        // listener: a reconnect in between is accepted into the backlog of a
        // listener about to go, and the request finds the peer closed. That
        // agent is still going away; try again like any failed reconnect.
        absl::SleepFor(absl::Milliseconds(200));
        continue;
      }
      std::fprintf(stderr, "stockade-tail: could not send the request to %s\n", o.socket_path.c_str());
      return kExitError;
    }
    if (resumed) std::fprintf(stderr, "stockade-tail: reconnected to stockaded; events in the gap may be missing\n");
    std::string pending;
    static char buf[1 << 18];
    bool agent_gone = false;
    bool unflushed = false;
    while (!g_stop) {
      pollfd p{c.fd.get(), POLLIN, 0};
      // Output goes out as soon as the agent has nothing more at once: big
      // writes under a flood, no delay for a person watching a trickle.
      int ready = poll(&p, 1, unflushed ? 0 : 200);
      if (ready <= 0) {
        if (unflushed) std::fflush(stdout);
        unflushed = false;
        continue;
      }
      unflushed = true;
      ssize_t n = read(c.fd.get(), buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        agent_gone = true;
        break;
      }
      pending.append(buf, n);
      HandleLines(pending, o, summary, last_time);
    }
    std::fflush(stdout);
    if (!agent_gone || !o.follow) break;  // a one-shot request ends when the agent closes it
    std::fprintf(stderr, "stockade-tail: stockaded went away; reconnecting (Ctrl-C to stop)\n");
    resumed = true;
  }
  if (ferror(stdout)) exit_code = kExitError;
  if (o.follow || isatty(STDERR_FILENO)) summary.Print();
  return exit_code;
}

// SPDX-License-Identifier: Apache-2.0
//
// Drop events from the real programs through the agent's event hub to
// subscribers on its socket: the fields of each drop reason's event, the
// filters the hub applies, aggregation counts, history, and a stuck
// subscriber that loses only its own oldest events, and is told so.
#include "stockade/agent/event_hub.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <regex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/kernel/verdict_rows.h"

namespace stockade::testing {
namespace {

// A client of the hub's socket, as stockade-tail is one.
class Subscriber {
 public:
  static Subscriber Connect(const std::string& path, const nlohmann::json& request, int rcvbuf = 0) {
    Subscriber s;
    s.fd_ = ScopedFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (rcvbuf) setsockopt(s.fd_.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(connect(s.fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
    std::string line = request.dump() + "\n";
    EXPECT_EQ(send(s.fd_.get(), line.data(), line.size(), MSG_NOSIGNAL), static_cast<ssize_t>(line.size()));
    if (request.value("follow", false)) {
      // The hub registers a subscriber when it reads the request: what comes before, it does not see.
      for (auto l = s.Next(); l; l = s.Next()) {
        if ((*l)["type"] == "history_end") break;
        if ((*l)["type"] == "error") {
          s.error_ = std::move(l);
          break;
        }
      }
    }
    return s;
  }

  // The next line, or nullopt after `timeout` or at the end of the stream.
  std::optional<nlohmann::json> Next(absl::Duration timeout = absl::Seconds(5)) {
    absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        nlohmann::json j = nlohmann::json::parse(buffer_.substr(0, nl));
        buffer_.erase(0, nl + 1);
        return j;
      }
      int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      pollfd p{fd_.get(), POLLIN, 0};
      if (wait_ms <= 0 || poll(&p, 1, wait_ms) <= 0) return std::nullopt;
      char buf[65536];
      ssize_t n = read(fd_.get(), buf, sizeof(buf));
      if (n <= 0) {
        closed_ = true;
        return std::nullopt;
      }
      buffer_.append(buf, n);
    }
  }

  // The next event line, after the hello and history_end lines.
  std::optional<nlohmann::json> NextEvent(absl::Duration timeout = absl::Seconds(5)) {
    if (error_) return std::exchange(error_, std::nullopt);
    for (;;) {
      auto line = Next(timeout);
      if (!line || (*line)["type"] == "event" || (*line)["type"] == "lost" || (*line)["type"] == "error") return line;
    }
  }

  bool closed() const { return closed_; }

 private:
  ScopedFd fd_;
  std::string buffer_;
  bool closed_ = false;
  std::optional<nlohmann::json> error_;  // a refusal read while waiting for the subscription
};

class EventHubTest : public WebEndpointTest {
 protected:
  void SetUp() override {
    WebEndpointTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    SetInterval(0);  // one record per drop
    StartHub({});
  }

  void TearDown() override {
    hub_.reset();
    WebEndpointTest::TearDown();
  }

  void SetInterval(uint64_t ns) {
    ASSERT_TRUE(dp_->WriteConfig({.event_interval_ns = ns, .flags = STOCKADE_CONFIG_F_SET}).ok());
  }

  void StartHub(EventHubOptions options) {
    hub_.reset();
    static int counter = 0;
    socket_ = absl::StrCat("/tmp/stockade-events-test-", getpid(), "-", counter++, ".sock");
    options.socket_path = socket_;
    auto hub = EventHub::Start(dp_->events_fd(), options);
    ASSERT_TRUE(hub.ok()) << hub.status();
    hub_ = std::move(*hub);
    auto context = std::make_shared<EventContext>();
    auto add = [&](const char* ip, const char* name, LabelSet labels) {
      context->AddWorkload(*ParseIpAddress(ip), {.container = name, .container_id = std::string(64, name[0]),
                                                 .network = "shop", .interface = std::string("veth-") + name,
                                                 .labels = labels});
    };
    add(kWebIp, "web", {{"tier", "web"}});
    add(kWebIp6, "web", {{"tier", "web"}});
    add(kBackendIp, "backend", {{"tier", "backend"}});
    add(kBackendIp6, "backend", {{"tier", "backend"}});
    add(kFrontendIp, "frontend", {{"tier", "frontend"}});
    context->AddIdentityLabels(kPartner, {{"cidr", "198.51.100.0/24"}});
    for (const DatapathRule& r : WebRules()) context->AddRule(r.rule_id, absl::StrCat("web-policy rule ", r.rule_id));
    hub_->SetContext(std::move(context));
  }

  int ProgramFd(Hook hook) {
    return hook == Hook::kTcIngress ? dp_->tc_ingress_fd() : hook == Hook::kTcEgress ? dp_->tc_egress_fd() : dp_->xdp_fd();
  }

  // Waits until the hub has read `n` records in all.
  void WaitReceived(uint64_t n) {
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (hub_->Stats().received < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
    ASSERT_EQ(hub_->Stats().received, n);
  }

  std::string socket_;
  std::unique_ptr<EventHub> hub_;
};

void ExpectSchema(const nlohmann::json& e) {
  static const std::regex kRfc3339Nanos(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z)");
  ASSERT_TRUE(e["time"].is_string());
  EXPECT_TRUE(std::regex_match(e["time"].get<std::string>(), kRfc3339Nanos)) << e["time"];
  absl::Time t;
  std::string err;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, e["time"].get<std::string>(), &t, &err)) << err;
  EXPECT_LT(absl::AbsDuration(absl::Now() - t), absl::Seconds(10)) << "the monotonic stamp became wall time";
  for (const char* key : {"verdict", "reason", "direction", "protocol", "interface", "rule"})
    EXPECT_TRUE(e[key].is_string()) << key << " in " << e;
  for (const char* key : {"count", "rule_id"}) EXPECT_TRUE(e[key].is_number_unsigned()) << key << " in " << e;
  for (const char* end : {"source", "destination"}) {
    const nlohmann::json& peer = e[end];
    ASSERT_TRUE(peer.is_object()) << end;
    for (const char* key : {"ip", "port", "identity", "container", "labels"})
      EXPECT_TRUE(peer.contains(key)) << end << "." << key << " in " << e;
    EXPECT_TRUE(peer["identity"].is_number_unsigned());
    EXPECT_TRUE(peer["labels"].is_object());
  }
}

TEST_F(EventHubTest, EveryDropRowMakesAnEventWithItsReasonRuleAndEnds) {
  Subscriber tail = Subscriber::Connect(socket_, {{"follow", true}});
  int drops = 0;
  for (const VerdictRow& row : VerdictRows()) {
    if (row.passes) continue;
    SCOPED_TRACE(row.description);
    ++drops;
    ASSERT_FALSE(Passes(row.hook, row.frame));
    auto event = tail.NextEvent();
    ASSERT_TRUE(event.has_value()) << "no event";
    const nlohmann::json& e = *event;
    ExpectSchema(e);
    EXPECT_EQ(e["type"], "event");
    EXPECT_EQ(e["reason"], DropReasonName(row.reason));
    EXPECT_EQ(e["verdict"], "DROPPED");
    EXPECT_EQ(e["direction"], row.hook == Hook::kTcIngress ? "egress" : "ingress");
    EXPECT_EQ(e["count"], 1);
    EXPECT_EQ(e["rule_id"], row.rule_id);
    std::string rule = row.rule_id ? absl::StrCat("web-policy rule ", row.rule_id)
                       : row.reason == DROP_POLICY_DENIED ? "default deny"
                                                          : "";
    EXPECT_EQ(e["rule"], rule);
    // Where an end's address is a workload's, the event names it.
    for (const char* end : {"source", "destination"}) {
      const nlohmann::json& peer = e[end];
      std::string ip = peer["ip"].is_string() ? peer["ip"].get<std::string>() : "";
      if (ip == kWebIp || ip == kWebIp6) {
        EXPECT_EQ(peer["container"], "web") << end;
        EXPECT_EQ(peer["labels"], nlohmann::json({{"tier", "web"}})) << end;
      } else if (ip == kBackendIp || ip == kBackendIp6) {
        EXPECT_EQ(peer["container"], "backend") << end;
      } else if (ip == kFrontendIp) {
        EXPECT_EQ(peer["container"], "frontend") << end;
      } else {
        EXPECT_TRUE(peer["container"].is_null()) << end << ": " << peer;
      }
    }
    if (row.reason == DROP_POLICY_DENIED) {
      // The program's own end is web: its identity is on the side the direction says.
      const char* local = row.hook == Hook::kTcIngress ? "source" : "destination";
      EXPECT_EQ(e[local]["identity"], kWeb);
      EXPECT_EQ(e["interface"], "veth-web");
    }
  }
  EXPECT_GT(drops, 30);
  EXPECT_FALSE(tail.NextEvent(absl::Milliseconds(100)).has_value()) << "one event a drop, no more";
}

// A new flow's record goes to a subscriber that asks for forwarded records
// (stockade-tail --verdict forwarded, --all-verdicts), named as drops are; one
// that names no verdict keeps seeing drops only, as before.
TEST_F(EventHubTest, AForwardedRecordReachesTheSubscribersThatAskForIt) {
  Subscriber flows = Subscriber::Connect(socket_, {{"follow", true}, {"filter", {{"verdict", {"forwarded"}}}}});
  Subscriber all =
      Subscriber::Connect(socket_, {{"follow", true}, {"filter", {{"verdict", {"dropped", "audit", "forwarded"}}}}});
  Subscriber drops = Subscriber::Connect(socket_, {{"follow", true}});
  ASSERT_TRUE(Passes(Hook::kTcIngress, FromWeb().Tcp({.sport = 40000, .dport = 5432, .flags = kSyn}).Build()));
  ASSERT_TRUE(Passes(Hook::kTcEgress,
                     ToWeb(kBackendIp).Tcp({.sport = 5432, .dport = 40000, .flags = kSyn | kTcpAck}).Build()));
  ASSERT_FALSE(Passes(Hook::kTcIngress, FromWeb().Tcp({.sport = 40000, .dport = 5433, .flags = kSyn}).Build()));
  WaitReceived(2);  // the new flow and the drop; the reply made none

  auto flow = flows.NextEvent();
  ASSERT_TRUE(flow.has_value());
  const nlohmann::json& e = *flow;
  ExpectSchema(e);
  EXPECT_EQ(e["verdict"], "FORWARDED");
  EXPECT_EQ(e["reason"], "FORWARDED");
  EXPECT_EQ(e["count"], 1);
  EXPECT_EQ(e["direction"], "egress");
  EXPECT_EQ(e["protocol"], "tcp");
  EXPECT_EQ(e["rule_id"], 2);
  EXPECT_EQ(e["rule"], "web-policy rule 2");
  EXPECT_EQ(e["source"]["container"], "web");
  EXPECT_EQ(e["source"]["port"], 40000);
  EXPECT_EQ(e["source"]["identity"], kWeb);
  EXPECT_EQ(e["destination"]["container"], "backend");
  EXPECT_EQ(e["destination"]["port"], 5432);
  EXPECT_EQ(e["destination"]["identity"], kBackend);
  EXPECT_EQ(e["interface"], "veth-web");
  EXPECT_FALSE(flows.NextEvent(absl::Milliseconds(100)).has_value()) << "one record for the flow, none for the drop";

  auto first = all.NextEvent(), second = all.NextEvent();
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_EQ((*first)["verdict"], "FORWARDED");
  EXPECT_EQ((*second)["verdict"], "DROPPED");

  auto drop = drops.NextEvent();
  ASSERT_TRUE(drop.has_value());
  EXPECT_EQ((*drop)["verdict"], "DROPPED");
  EXPECT_FALSE(drops.NextEvent(absl::Milliseconds(100)).has_value());

  EventHubStats stats = hub_->Stats();
  EXPECT_EQ(stats.flows[VERDICT_FORWARDED][DIR_EGRESS], 1u);
  EXPECT_EQ(stats.flows[VERDICT_DROPPED][DIR_EGRESS], 1u);
  EXPECT_EQ(stats.drops_received, 1u) << "a new flow is no drop";
  EXPECT_EQ(stats.subscriber_lost, 0u);
}

TEST_F(EventHubTest, IcmpEventsCarryTypeAndCodeInsteadOfPorts) {
  Subscriber tail = Subscriber::Connect(socket_, {{"follow", true}});
  ASSERT_FALSE(Passes(Hook::kTcEgress, ToWeb(kWorldIp).Icmpv4({.type = 13}).Build()));
  auto e = tail.NextEvent();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ((*e)["protocol"], "icmp");
  EXPECT_EQ((*e)["icmp_type"], 13);
  EXPECT_EQ((*e)["icmp_code"], 0);
  EXPECT_TRUE((*e)["source"]["port"].is_null());
  EXPECT_EQ((*e)["source"]["identity"], IDENTITY_WORLD);
}

TEST_F(EventHubTest, TheHubAppliesEachSubscribersFilter) {
  auto subscribe = [&](nlohmann::json filter) {
    return Subscriber::Connect(socket_, {{"follow", true}, {"filter", filter}});
  };
  Subscriber to_frontend = subscribe({{"to", {"tier=frontend"}}});
  Subscriber to_backend = subscribe({{"to", {"backend"}}});
  Subscriber web_either_end = subscribe({{"container", {"web"}}});
  Subscriber from_backend = subscribe({{"from", {"backend"}}});
  Subscriber ingress_only = subscribe({{"direction", "ingress"}});
  Subscriber port_5433_udp = subscribe({{"port", {5433}}, {"protocol", {"udp"}}});
  Subscriber spoofed = subscribe({{"reason", {"spoofed_source"}}, {"verdict", {"dropped"}}});
  Subscriber bad = subscribe({{"reason", {"NOT_A_REASON"}}});

  auto error = bad.NextEvent();
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ((*error)["type"], "error");
  EXPECT_NE((*error)["error"].get<std::string>().find("NOT_A_REASON"), std::string::npos) << *error;

  const Hook out = Hook::kTcIngress, in = Hook::kTcEgress;
  ASSERT_FALSE(Passes(out, FromWeb(kFrontendIp).Tcp({.dport = 5432, .flags = kSyn}).Build()));
  ASSERT_FALSE(Passes(out, FromWeb(kFrontendIp).Tcp({.dport = 5431, .flags = kSyn}).Build()));
  ASSERT_FALSE(Passes(out, FromWeb().Tcp({.dport = 5433, .flags = kSyn}).Build()));
  ASSERT_FALSE(Passes(in, ToWeb(kBackendIp).Tcp({.dport = 81, .flags = kSyn}).Build()));
  ASSERT_FALSE(Passes(out, FromWeb(kBackendIp, "10.0.0.66").Udp({.dport = 5433}).Build()));  // spoofed
  WaitReceived(5);

  auto count = [](Subscriber& s) {
    int n = 0;
    while (auto e = s.NextEvent(absl::Milliseconds(200))) n += (*e)["type"] == "event";
    return n;
  };
  EXPECT_EQ(count(to_frontend), 2);
  EXPECT_EQ(count(to_backend), 2);  // web's denied 5433 and the spoofed datagram
  EXPECT_EQ(count(web_either_end), 4);
  EXPECT_EQ(count(from_backend), 1);
  EXPECT_EQ(count(ingress_only), 1);
  EXPECT_EQ(count(port_5433_udp), 1);
  EXPECT_EQ(count(spoofed), 1);
}

TEST_F(EventHubTest, AggregatedEventsCarryTheTrueCount) {
  SetInterval(absl::ToInt64Nanoseconds(absl::Milliseconds(300)));
  Subscriber tail = Subscriber::Connect(socket_, {{"follow", true}});
  std::vector<uint8_t> denied = FromWeb().Tcp({.sport = 40000, .dport = 5433, .flags = kSyn}).Build();
  std::vector<uint8_t> other_port = FromWeb().Tcp({.sport = 40001, .dport = 5433, .flags = kSyn}).Build();
  ASSERT_FALSE(Passes(Hook::kTcIngress, denied));
  for (int i = 0; i < 8; ++i) ASSERT_FALSE(Passes(Hook::kTcIngress, i % 2 ? denied : other_port));
  absl::SleepFor(absl::Milliseconds(450));  // the coarse clock moves in ticks; past the interval for sure
  ASSERT_FALSE(Passes(Hook::kTcIngress, denied));
  auto first = tail.NextEvent();
  auto second = tail.NextEvent();
  ASSERT_TRUE(first && second);
  // The source port is not part of the aggregate: a flood from many ports is one flow.
  EXPECT_EQ((*first)["count"], 1);
  EXPECT_EQ((*second)["count"], 9);
  EXPECT_EQ(Count(DROP_POLICY_DENIED, DIR_EGRESS, VERDICT_DROPPED), 10u);
  EXPECT_FALSE(tail.NextEvent(absl::Milliseconds(100)).has_value());
}

TEST_F(EventHubTest, HistoryAnswersLastAndSinceAndThenCloses) {
  for (uint16_t port = 1000; port < 1010; ++port)
    ASSERT_FALSE(Passes(Hook::kTcIngress, FromWeb().Tcp({.dport = port, .flags = kSyn}).Build()));
  WaitReceived(10);
  Subscriber last3 = Subscriber::Connect(socket_, {{"last", 3}, {"follow", false}});
  std::vector<int> ports;
  while (auto e = last3.NextEvent()) ports.push_back((*e)["destination"]["port"]);
  EXPECT_EQ(ports, (std::vector<int>{1007, 1008, 1009})) << "the newest three, oldest first";
  EXPECT_TRUE(last3.closed()) << "a history request ends when the history has been sent";

  Subscriber future = Subscriber::Connect(
      socket_, {{"since_ns", absl::ToUnixNanos(absl::Now() + absl::Hours(1))}, {"follow", false}});
  EXPECT_FALSE(future.NextEvent().has_value());
  EXPECT_TRUE(future.closed());

  Subscriber filtered = Subscriber::Connect(
      socket_, {{"since_ns", absl::ToUnixNanos(absl::Now() - absl::Minutes(1))}, {"filter", {{"port", {1004}}}}});
  auto only = filtered.NextEvent();
  ASSERT_TRUE(only.has_value());
  EXPECT_EQ((*only)["destination"]["port"], 1004);
  EXPECT_FALSE(filtered.NextEvent().has_value());
}

TEST_F(EventHubTest, AStuckSubscriberLosesOnlyItsOwnOldestEventsAndIsTold) {
  StartHub({.subscriber_queue = 500, .socket_buffer_bytes = 64 << 10});
  // It asks and then does not read; the kernel's socket buffer is kept small so its queue fills.
  Subscriber stuck = Subscriber::Connect(socket_, {{"follow", true}}, /*rcvbuf=*/4096);
  Subscriber fast = Subscriber::Connect(socket_, {{"follow", true}});
  std::atomic<int> fast_events{0}, fast_lost{0};
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done || fast_events + fast_lost < 20000) {
      auto e = fast.NextEvent(absl::Milliseconds(500));
      if (!e) {
        if (done) break;
        continue;
      }
      if ((*e)["type"] == "event") ++fast_events;
      if ((*e)["type"] == "lost") fast_lost += (*e)["count"].get<int>();
    }
  });
  std::vector<uint8_t> denied = FromWeb().Tcp({.dport = 5433, .flags = kSyn}).Build();
  constexpr int kBatches = 40, kBatch = 250;
  for (int b = 0; b < kBatches; ++b) {
    auto run = RunProgram(dp_->tc_ingress_fd(), denied, kBatch);
    ASSERT_TRUE(run.ok()) << run.status();
    WaitReceived(uint64_t{kBatch} * (b + 1));  // the hub kept up, stuck subscriber or not
    // A subscriber that keeps up loses nothing, whatever the stuck one does.
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (fast_events + fast_lost < kBatch * (b + 1) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  }
  done = true;
  reader.join();
  EXPECT_EQ(fast_events, kBatches * kBatch) << "the fast subscriber lost " << fast_lost;
  EXPECT_EQ(fast_lost, 0);

  uint64_t stuck_events = 0, stuck_lost = 0;
  while (auto e = stuck.NextEvent(absl::Milliseconds(500))) {
    if ((*e)["type"] == "event") ++stuck_events;
    if ((*e)["type"] == "lost") {
      EXPECT_EQ((*e)["stage"], "subscriber");
      stuck_lost += (*e)["count"].get<uint64_t>();
    }
  }
  EXPECT_GT(stuck_lost, 0u);
  EXPECT_EQ(stuck_events + stuck_lost, uint64_t{kBatches} * kBatch) << "every event delivered or counted";
  EXPECT_EQ(hub_->Stats().subscriber_lost, stuck_lost);
  EXPECT_EQ(hub_->Stats().received, uint64_t{kBatches} * kBatch);
}

}  // namespace
}  // namespace stockade::testing

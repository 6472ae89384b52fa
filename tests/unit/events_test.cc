// SPDX-License-Identifier: Apache-2.0
//
// The pure parts of the event pipeline: an event's JSON and text, filters,
// a subscriber's bounded queue, and the Prometheus text format.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "absl/strings/str_cat.h"
#include "stockade/events/event_filter.h"
#include "stockade/events/event_record.h"
#include "stockade/events/event_text.h"
#include "stockade/identity/identity_allocator.h"
#include "stockade/events/subscriber_queue.h"
#include "stockade/metrics/prometheus_text.h"

namespace stockade {
namespace {

drop_event Ipv4Drop(const char* src, const char* dst, uint16_t sport, uint16_t dport, uint8_t direction) {
  drop_event e{};
  e.family = STOCKADE_AF_INET;
  e.protocol = IPPROTO_TCP;
  inet_pton(AF_INET, src, e.saddr);
  inet_pton(AF_INET, dst, e.daddr);
  e.sport = htons(sport);
  e.dport = htons(dport);
  e.direction = direction;
  e.verdict = VERDICT_DROPPED;
  e.reason = DROP_POLICY_DENIED;
  e.count = 3;
  e.ifindex = 7;
  e.local_identity = 300;
  e.remote_identity = 301;
  e.rule_id = 5;
  e.packet_length = 74;
  return e;
}

std::shared_ptr<EventContext> Context() {
  auto c = std::make_shared<EventContext>();
  c->AddWorkload(*ParseIpAddress("10.0.0.2"), {.container = "web", .container_id = "aaaaaaaaaaaaaaaa", .network = "shop",
                                               .interface = "veth1", .labels = {{"tier", "web"}}});
  c->AddWorkload(*ParseIpAddress("10.0.0.3"), {.container = "db \"primary\"", .container_id = "bbbbbbbbbbbbbbbb",
                                               .network = "shop", .interface = "veth2", .labels = {{"tier", "db"}}});
  c->AddRule(5, "db-ingress ingressDeny[0] (policies/db.yaml:9)");
  c->AddIdentityLabels(IDENTITY_WORLD, {{"reserved", "world"}});
  return c;
}

nlohmann::json Json(const EventRecord& r) {
  std::string line;
  AppendEventJson(r, line);
  return nlohmann::json::parse(line);
}

// The agent keeps one context and publishes copies: a copy the event thread
// holds must not change when the agent changes its own afterwards.
TEST(EventContextTest, ACopyKeepsWhatItWasMadeWith) {
  EventContext kept;
  for (uint32_t id = 1; id <= 1000; ++id) kept.AddRule(id, absl::StrCat("rule ", id));
  kept.AddCidrIdentity(300, ParseIpPrefix("10.0.0.0/8").value());
  kept.AddIdentityLabels(301, {{"cidr", "10.0.0.0/8"}});
  EXPECT_EQ(kept.IdentityLabelsJson(300), kept.IdentityLabelsJson(301)) << "the same JSON as from labels";
  const EventContext published = kept;
  kept.AddRule(7, "edited");
  kept.RemoveRule(8);
  kept.AddRule(5000, "new");
  kept.ClearIdentityLabels();
  ASSERT_NE(published.RuleOrigin(7), nullptr);
  EXPECT_EQ(*published.RuleOrigin(7), "rule 7");
  ASSERT_NE(published.RuleOrigin(8), nullptr);
  EXPECT_EQ(published.RuleOrigin(5000), nullptr);
  EXPECT_EQ(published.IdentityLabelsJson(300), R"({"cidr":"10.0.0.0/8"})");
  EXPECT_EQ(*kept.RuleOrigin(7), "edited");
  EXPECT_EQ(kept.RuleOrigin(8), nullptr);
  EXPECT_EQ(*kept.RuleOrigin(5000), "new");
  EXPECT_EQ(*kept.RuleOrigin(9), "rule 9");
  EXPECT_EQ(kept.IdentityLabelsJson(300), "{}");
}

IdentityTable CidrTable(int count) {
  IdentityAllocator allocator;
  for (int i = 0; i < count; ++i)
    EXPECT_TRUE(allocator.ForCidr(ParseIpPrefix(absl::StrCat("10.", i / 65536, ".", i / 256 % 256, ".", i % 256, "/32")).value()).ok());
  EXPECT_TRUE(allocator.ForLabels({{"tier", "web"}}).ok());
  return allocator.table();
}

// What FollowIdentities made must equal a context made from scratch, for every id of the table.
void ExpectNamesAllOf(const EventContext& followed, const IdentityTable& table) {
  EventContext scratch;
  scratch.FollowIdentities(table);
  for (uint32_t id : {uint32_t{IDENTITY_HOST}, uint32_t{IDENTITY_WORLD}, uint32_t{IDENTITY_UNMANAGED}})
    EXPECT_EQ(followed.IdentityLabelsJson(id), scratch.IdentityLabelsJson(id));
  for (uint32_t id = STOCKADE_IDENTITY_FIRST_ALLOCATED; id < table.next_id + 2; ++id)
    ASSERT_EQ(followed.IdentityLabelsJson(id), scratch.IdentityLabelsJson(id)) << "identity " << id;
}

// The agent follows the allocator after every reconcile: a table that grew
// by one adds that one, and a context published before keeps what it had.
TEST(EventContextTest, FollowingAGrownTableAddsTheNewIdentityAndLeavesAPublishedCopyAlone) {
  IdentityTable table = CidrTable(3000);
  EventContext names;
  ASSERT_TRUE(names.FollowIdentities(table));
  EXPECT_EQ(names.IdentityLabelsJson(STOCKADE_IDENTITY_FIRST_ALLOCATED), R"({"cidr":"10.0.0.0/32"})");
  EXPECT_EQ(names.IdentityLabelsJson(IDENTITY_WORLD), R"({"reserved":"world"})");
  const EventContext published = names;
  auto allocator = IdentityAllocator::FromTable(table);
  ASSERT_TRUE(allocator.ok());
  absl::StatusOr<uint32_t> added = allocator->ForCidr(ParseIpPrefix("192.0.2.0/24").value());
  ASSERT_TRUE(added.ok());
  ASSERT_TRUE(names.FollowIdentities(allocator->table()));
  EXPECT_EQ(names.IdentityLabelsJson(*added), R"({"cidr":"192.0.2.0/24"})");
  EXPECT_EQ(published.IdentityLabelsJson(*added), "{}") << "a copy a reader holds does not change";
  ExpectNamesAllOf(names, allocator->table());
  // A release is followed from scratch: the released one is gone.
  allocator->Release(*added);
  ASSERT_TRUE(names.FollowIdentities(allocator->table()));
  EXPECT_EQ(names.IdentityLabelsJson(*added), "{}");
  ExpectNamesAllOf(names, allocator->table());
}

// From scratch the work comes in steps: paused, the next call goes on, and
// what was allocated in the pause is named too.
TEST(EventContextTest, FollowingFromScratchPausesAndGoesOnWithWhatCameMeanwhile) {
  const int count = 3 * static_cast<int>(EventContext::kFollowChunk);
  IdentityTable table = CidrTable(count);
  auto allocator = IdentityAllocator::FromTable(table);
  ASSERT_TRUE(allocator.ok());
  EventContext names;
  int pauses = 0;
  ASSERT_FALSE(names.FollowIdentities(allocator->table(), [&] { return ++pauses == 1; }));
  EXPECT_EQ(pauses, 1);
  ASSERT_TRUE(allocator->ForCidr(ParseIpPrefix("0.0.0.0/0").value()).ok()) << "sorts before every paused-at prefix";
  ASSERT_TRUE(allocator->ForCidr(ParseIpPrefix("203.0.113.7/32").value()).ok());
  ASSERT_TRUE(allocator->ForLabels({{"tier", "db"}}).ok());
  ASSERT_TRUE(names.FollowIdentities(allocator->table(), [&] { return ++pauses < 0; }));
  EXPECT_GE(pauses, 3) << "asked again between steps";
  ExpectNamesAllOf(names, allocator->table());
}

TEST(EventJson, EgressEventNamesBothEndsAndTheRule) {
  EventRecord r{.raw = Ipv4Drop("10.0.0.2", "10.0.0.3", 40000, 5432, DIR_EGRESS),
                .time_ns = 1795689077123456789,
                .context = Context()};
  nlohmann::json j = Json(r);
  EXPECT_EQ(j["type"], "event");
  EXPECT_EQ(j["time"], "2026-11-26T10:31:17.123456789Z");
  EXPECT_EQ(j["verdict"], "DROPPED");
  EXPECT_EQ(j["reason"], "POLICY_DENIED");
  EXPECT_EQ(j["direction"], "egress");
  EXPECT_EQ(j["protocol"], "tcp");
  EXPECT_EQ(j["interface"], "veth1");  // web's: an egress event is decided at the source
  EXPECT_EQ(j["network"], "shop");
  EXPECT_EQ(j["count"], 3);
  EXPECT_EQ(j["rule_id"], 5);
  EXPECT_EQ(j["rule"], "db-ingress ingressDeny[0] (policies/db.yaml:9)");
  EXPECT_EQ(j["source"], nlohmann::json({{"ip", "10.0.0.2"}, {"port", 40000}, {"identity", 300}, {"container", "web"},
                                         {"labels", {{"tier", "web"}}}}));
  EXPECT_EQ(j["destination"]["container"], "db \"primary\"");  // escaped, and read back whole
  EXPECT_EQ(j["destination"]["identity"], 301);
  EXPECT_EQ(j["destination"]["port"], 5432);
}

TEST(EventJson, IngressSwapsWhichIdentityIsLocal) {
  EventRecord r{.raw = Ipv4Drop("198.51.100.9", "10.0.0.2", 1234, 80, DIR_INGRESS), .time_ns = 0, .context = Context()};
  r.raw.local_identity = 300;
  r.raw.remote_identity = IDENTITY_WORLD;
  r.raw.rule_id = 0;
  nlohmann::json j = Json(r);
  EXPECT_EQ(j["source"]["identity"], IDENTITY_WORLD);
  EXPECT_TRUE(j["source"]["container"].is_null());
  EXPECT_EQ(j["source"]["labels"], nlohmann::json({{"reserved", "world"}}));
  EXPECT_EQ(j["destination"]["identity"], 300);
  EXPECT_EQ(j["interface"], "veth1");
  EXPECT_EQ(j["rule"], "default deny");
  EXPECT_EQ(j["time"], "1970-01-01T00:00:00.000000000Z");
}

TEST(EventJson, TlsRequiredNamesTheRequireTlsRule) {
  EventRecord r{.raw = Ipv4Drop("10.0.0.2", "10.0.0.3", 40000, 443, DIR_EGRESS), .time_ns = 0, .context = Context()};
  r.raw.reason = DROP_TLS_REQUIRED;
  r.raw.verdict = VERDICT_AUDIT;
  nlohmann::json j = Json(r);
  EXPECT_EQ(j["reason"], "TLS_REQUIRED");
  EXPECT_EQ(j["verdict"], "AUDIT");
  EXPECT_EQ(j["rule"], "db-ingress ingressDeny[0] (policies/db.yaml:9)");
}

TEST(EventJson, WithoutContextTheKernelFieldsStillStand) {
  EventRecord r{.raw = Ipv4Drop("10.0.0.2", "10.0.0.3", 1, 2, DIR_EGRESS), .time_ns = 5};
  r.raw.reason = DROP_SPOOFED_SOURCE;
  r.raw.rule_id = 0;
  nlohmann::json j = Json(r);
  EXPECT_EQ(j["reason"], "SPOOFED_SOURCE");
  EXPECT_EQ(j["rule"], "");
  EXPECT_EQ(j["interface"], "if7");
  EXPECT_TRUE(j["source"]["container"].is_null());
  EXPECT_EQ(j["source"]["labels"], nlohmann::json::object());
}

TEST(EventJson, IcmpHasTypeAndCodeAndNoPorts) {
  EventRecord r{.raw = Ipv4Drop("10.0.0.2", "10.0.0.3", 8, 0, DIR_EGRESS), .time_ns = 5};
  r.raw.protocol = IPPROTO_ICMP;
  nlohmann::json j = Json(r);
  EXPECT_EQ(j["protocol"], "icmp");
  EXPECT_EQ(j["icmp_type"], 8);
  EXPECT_EQ(j["icmp_code"], 0);
  EXPECT_TRUE(j["source"]["port"].is_null());
  EXPECT_TRUE(j["destination"]["port"].is_null());
  EXPECT_FALSE(j.contains("tcp_flags"));
}

TEST(EventJson, TheFirstFieldsComeInAFixedOrder) {
  EventRecord r{.raw = Ipv4Drop("10.0.0.2", "10.0.0.3", 1, 2, DIR_EGRESS), .time_ns = 5};
  std::string line;
  AppendEventJson(r, line);
  EXPECT_EQ(line.rfind("{\"type\":\"event\",\"time\":\"1970-01-01T00:00:00.000000005Z\",\"verdict\":\"DROPPED\","
                       "\"reason\":\"POLICY_DENIED\",",
                       0),
            0u)
      << line;
}

// Found by fuzz/event_json_fuzzer (fuzz/corpus/event_json/regress-labels-not-utf8.bin):
// labels that are not UTF-8 threw from the JSON library and ended the agent.
TEST(EventJson, LabelsThatAreNotUtf8StillMakeOneJsonObject) {
  auto c = std::make_shared<EventContext>();
  c->AddWorkload(*ParseIpAddress("10.0.0.2"), {.container = "web\x81", .labels = {{"tier", "w\x81" "eb"}}});
  c->AddIdentityLabels(301, {{"k\xff", "v"}});
  EventRecord r{.raw = Ipv4Drop("10.0.0.2", "10.0.0.3", 40000, 5432, DIR_EGRESS), .time_ns = 0, .context = c};
  nlohmann::json j = Json(r);
  EXPECT_EQ(j["source"]["labels"]["tier"], "w\xef\xbf\xbd" "eb") << "the bad byte becomes U+FFFD";
  EXPECT_EQ(j["source"]["container"], "web\xef\xbf\xbd");
  EXPECT_TRUE(j["destination"]["labels"].contains("k\xef\xbf\xbd"));
}

TEST(Rfc3339, NanosecondsAndNegativeTimes) {
  EXPECT_EQ(FormatRfc3339Nanos(1), "1970-01-01T00:00:00.000000001Z");
  EXPECT_EQ(FormatRfc3339Nanos(-1), "1969-12-31T23:59:59.999999999Z");
  EXPECT_EQ(FormatRfc3339Nanos(1795689077000000000), "2026-11-26T10:31:17.000000000Z");
}

TEST(EventText, OneReadableLine) {
  EventRecord r{.raw = Ipv4Drop("10.0.0.2", "10.0.0.3", 40000, 5432, DIR_EGRESS),
                .time_ns = 1795689077123456789,
                .context = Context()};
  EXPECT_EQ(FormatEventText(Json(r), false),
            "2026-11-26 10:31:17.123 DROPPED POLICY_DENIED web 10.0.0.2:40000 -> db \"primary\" 10.0.0.3:5432 tcp x3 "
            "egress veth1 rule: db-ingress ingressDeny[0] (policies/db.yaml:9)");
  std::string coloured = FormatEventText(Json(r), true);
  EXPECT_NE(coloured.find("\033[31mDROPPED"), std::string::npos);
}

TEST(WorkloadSelector, NamesIdsAndLabels) {
  EventWorkload web{.container = "web", .container_id = "0123456789abcdef", .labels = {{"tier", "web"}, {"app", "shop"}}};
  EXPECT_TRUE(WorkloadSelector::Parse("web")->Matches(&web));
  EXPECT_FALSE(WorkloadSelector::Parse("we")->Matches(&web));
  EXPECT_TRUE(WorkloadSelector::Parse("0123456789ab")->Matches(&web));
  EXPECT_FALSE(WorkloadSelector::Parse("01234")->Matches(&web)) << "short prefixes are names, not ids";
  EXPECT_TRUE(WorkloadSelector::Parse("tier=web")->Matches(&web));
  EXPECT_TRUE(WorkloadSelector::Parse("tier=web, app=shop")->Matches(&web));
  EXPECT_FALSE(WorkloadSelector::Parse("tier=web,app=bank")->Matches(&web));
  EXPECT_FALSE(WorkloadSelector::Parse("web")->Matches(nullptr));
  EXPECT_FALSE(WorkloadSelector::Parse("").ok());
  EXPECT_FALSE(WorkloadSelector::Parse("tier=web,=x").ok());
}

TEST(EventFilter, RoundTripsThroughJson) {
  EventFilter f;
  f.from.push_back(*WorkloadSelector::Parse("web"));
  f.to.push_back(*WorkloadSelector::Parse("tier=db"));
  f.reasons = {DROP_POLICY_DENIED, DROP_SPOOFED_SOURCE};
  f.verdicts = {VERDICT_AUDIT};
  f.ports = {5432};
  f.protocols = {IPPROTO_TCP, 0};
  f.identities = {300};
  f.direction = DIR_INGRESS;
  auto back = EventFilter::FromJson(f.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), f.ToJson());
}

// Found by fuzz/event_filter_fuzzer (fuzz/corpus/event_filter/filter-5.json):
// a protocol without a name went out as "proto 47" and the agent refused it.
TEST(EventFilter, ProtocolWithoutANameRoundTrips) {
  EventFilter f;
  f.protocols = {47, IPPROTO_TCP};
  auto back = EventFilter::FromJson(f.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->protocols, f.protocols);
  EXPECT_EQ(ParseProtocol("proto 47").value_or(0), 47);
  EXPECT_EQ(ParseProtocol("47").value_or(0), 47);
  EXPECT_FALSE(ParseProtocol("proto 256").ok());
  EXPECT_FALSE(ParseProtocol("proto ").ok());
}

// Found by fuzzing event_filter with deep inputs (fuzz/regressions/event_filter/):
// the error for a wrong item dumped it, recursing once per level of nesting
// until the stack ran out.
TEST(EventFilter, DeeplyNestedItemIsAnErrorNotAStackOverflow) {
  constexpr int kDepth = 200000;
  for (const char* field : {"from", "port"}) {
    auto json = nlohmann::json::parse(absl::StrCat("{\"", field, "\": [", std::string(kDepth, '['),
                                                   std::string(kDepth, ']'), "]}"));
    auto filter = EventFilter::FromJson(json);
    ASSERT_FALSE(filter.ok()) << field;
    EXPECT_NE(filter.status().message().find(absl::StrCat("filter field '", field, "'")), std::string::npos)
        << filter.status();
    EXPECT_NE(filter.status().message().find("got a list"), std::string::npos) << filter.status();
  }
}

TEST(EventFilter, BadFieldsSayWhich) {
  auto unknown = EventFilter::FromJson({{"colour", {"red"}}});
  EXPECT_NE(unknown.status().message().find("colour"), std::string::npos) << unknown.status();
  auto port = EventFilter::FromJson({{"port", {70000}}});
  EXPECT_NE(port.status().message().find("port"), std::string::npos) << port.status();
  auto reason = EventFilter::FromJson({{"reason", {"POLICY_DENIDE"}}});
  EXPECT_NE(reason.status().message().find("POLICY_DENIED"), std::string::npos) << "lists the known ones";
  EXPECT_FALSE(EventFilter::FromJson({{"direction", "sideways"}}).ok());
  EXPECT_FALSE(EventFilter::FromJson({{"from", "web"}}).ok()) << "a list, not a string";
  EXPECT_TRUE(EventFilter::FromJson(nlohmann::json()).ok());
}

TEST(EventFilter, FieldsAndAlternatives) {
  auto context = Context();
  EventRecord egress{.raw = Ipv4Drop("10.0.0.2", "10.0.0.3", 40000, 5432, DIR_EGRESS), .time_ns = 0, .context = context};
  auto matches = [&](nlohmann::json j) {
    auto f = EventFilter::FromJson(j);
    EXPECT_TRUE(f.ok()) << f.status();
    return f->Matches(egress);
  };
  EXPECT_TRUE(matches(nlohmann::json::object()));
  EXPECT_TRUE(matches({{"from", {"web"}}, {"to", {"tier=db"}}}));
  EXPECT_FALSE(matches({{"from", {"tier=db"}}}));
  EXPECT_TRUE(matches({{"container", {"nope", "tier=db"}}})) << "values of one field are alternatives";
  EXPECT_FALSE(matches({{"container", {"web"}}, {"port", {80}}})) << "fields must all match";
  EXPECT_TRUE(matches({{"port", {40000}}}));
  EXPECT_TRUE(matches({{"identity", {301}}}));
  EXPECT_FALSE(matches({{"identity", {302}}}));
  EXPECT_TRUE(matches({{"reason", {"policy_denied"}}, {"verdict", {"dropped"}}, {"protocol", {"TCP"}}}));
  EXPECT_FALSE(matches({{"verdict", {"audit"}}}));
  EXPECT_FALSE(matches({{"protocol", {"udp"}}}));
  EXPECT_FALSE(matches({{"direction", "ingress"}}));
}

// A new-flow record as the datapath makes it: verdict FORWARDED, reason
// REASON_NONE, the allowing rule, the client as the source.
drop_event Ipv4NewFlow(uint32_t rule_id) {
  drop_event e = Ipv4Drop("10.0.0.2", "10.0.0.3", 40000, 5432, DIR_EGRESS);
  e.verdict = VERDICT_FORWARDED;
  e.reason = REASON_NONE;
  e.rule_id = rule_id;
  e.count = 1;
  return e;
}

TEST(FlowRecord, JsonAndTextNameTheFlowAndTheAllowingRule) {
  auto context = Context();
  context->AddRule(2, "web-egress egress[0] (policies/web.yaml:4)");
  EventRecord r{.raw = Ipv4NewFlow(2), .time_ns = 1795689077123456789, .context = context};
  nlohmann::json j = Json(r);
  EXPECT_EQ(j["verdict"], "FORWARDED");
  EXPECT_EQ(j["reason"], "FORWARDED");
  EXPECT_EQ(j["count"], 1);
  EXPECT_EQ(j["rule_id"], 2);
  EXPECT_EQ(j["rule"], "web-egress egress[0] (policies/web.yaml:4)");
  EXPECT_EQ(j["source"]["container"], "web");
  EXPECT_EQ(j["source"]["port"], 40000);
  EXPECT_EQ(j["destination"]["port"], 5432) << "the server port";
  EXPECT_EQ(j["direction"], "egress");
  EXPECT_EQ(FormatEventText(j, false),
            "2026-11-26 10:31:17.123 FORWARDED web 10.0.0.2:40000 -> db \"primary\" 10.0.0.3:5432 tcp egress veth1 "
            "rule: web-egress egress[0] (policies/web.yaml:4)")
      << "no reason repeating the verdict";
  EXPECT_NE(FormatEventText(j, true).find("\033[32mFORWARDED"), std::string::npos) << "green";
  // Allowed without a rule: no policy selects the endpoint in that direction.
  EXPECT_EQ(Json(EventRecord{.raw = Ipv4NewFlow(0), .time_ns = 0, .context = context})["rule"], "not enforced");
}

TEST(FlowRecord, AFilterWithoutAVerdictKeepsToDropsAndAudits) {
  auto context = Context();
  EventRecord flow{.raw = Ipv4NewFlow(5), .time_ns = 0, .context = context};
  EventRecord drop{.raw = Ipv4Drop("10.0.0.2", "10.0.0.3", 40000, 5432, DIR_EGRESS), .time_ns = 0, .context = context};
  EventRecord audit = drop;
  audit.raw.verdict = VERDICT_AUDIT;
  auto filter = [](nlohmann::json j) {
    auto f = EventFilter::FromJson(j);
    EXPECT_TRUE(f.ok()) << f.status();
    return *f;
  };
  EventFilter none = filter(nlohmann::json::object());
  EXPECT_FALSE(none.Matches(flow)) << "a subscriber that names no verdict sees what it saw before flows";
  EXPECT_TRUE(none.Matches(drop));
  EXPECT_TRUE(none.Matches(audit));
  EventFilter forwarded = filter({{"verdict", {"forwarded"}}});
  EXPECT_TRUE(forwarded.Matches(flow));
  EXPECT_FALSE(forwarded.Matches(drop));
  EventFilter all = filter({{"verdict", {"dropped", "audit", "FORWARDED"}}});
  EXPECT_TRUE(all.Matches(flow) && all.Matches(drop) && all.Matches(audit));
  // The other fields apply to flows as to drops.
  EXPECT_TRUE(filter({{"verdict", {"forwarded"}}, {"from", {"web"}}, {"port", {5432}}, {"protocol", {"tcp"}},
                      {"direction", "egress"}})
                  .Matches(flow));
  EXPECT_FALSE(filter({{"verdict", {"forwarded"}}, {"to", {"web"}}}).Matches(flow));
  EXPECT_FALSE(filter({{"verdict", {"forwarded"}}, {"direction", "ingress"}}).Matches(flow));
  EXPECT_FALSE(filter({{"verdict", {"forwarded"}}, {"reason", {"policy_denied"}}}).Matches(flow));
  // And the verdict round-trips, as stockade-tail sends it.
  auto back = EventFilter::FromJson(all.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->verdicts, all.verdicts);
  EXPECT_EQ(ParseVerdict("forwarded").value_or(99), VERDICT_FORWARDED);
  EXPECT_NE(ParseVerdict("allowed").status().message().find("forwarded"), std::string::npos) << "lists the known ones";
}

TEST(SubscriberQueue, KeepsOrderAndFinishesAHalfWrittenLine) {
  SubscriberQueue q(10);
  q.Push("aaaa\n");
  q.Push("bb\n");
  iovec iov[8];
  ASSERT_EQ(q.Gather(iov, 8), 2u);
  q.Consumed(7);  // "aaaa\nbb" of "aaaa\nbb\n"
  ASSERT_EQ(q.Gather(iov, 8), 1u);
  EXPECT_EQ(std::string(static_cast<char*>(iov[0].iov_base), iov[0].iov_len), "\n");
  q.Consumed(1);
  EXPECT_TRUE(q.empty());
}

TEST(SubscriberQueue, OverflowDropsTheOldestWaitingAndTellsBeforeTheNextLine) {
  SubscriberQueue q(3);
  q.Push("1\n");
  iovec iov[8];
  ASSERT_EQ(q.Gather(iov, 8), 1u);
  q.Consumed(0);  // "1\n" is now in flight; nothing written yet
  for (int i = 2; i <= 7; ++i) q.Push(std::to_string(i) + "\n");
  // Waiting were 2..7 in a queue of 3: 2, 3 and 4 went.
  EXPECT_EQ(q.lost_total(), 3u);
  std::string written;
  while (size_t n = q.Gather(iov, 1)) {
    written.append(static_cast<char*>(iov[0].iov_base), iov[0].iov_len);
    q.Consumed(iov[0].iov_len);
    ASSERT_EQ(n, 1u);
  }
  EXPECT_EQ(written, "1\n" + LostNotice("subscriber", 3) + "5\n6\n7\n");
}

TEST(SubscriberQueue, ANoticeWaitsForTheLineInFlight) {
  SubscriberQueue q(1);
  q.Push("first\n");
  iovec iov[8];
  ASSERT_EQ(q.Gather(iov, 8), 1u);
  q.Consumed(2);  // "fi" went out
  q.Push("second\n");
  q.Push("third\n");  // drops "second"
  std::string written = "fi";
  while (q.Gather(iov, 8)) {
    written.append(static_cast<char*>(iov[0].iov_base), iov[0].iov_len);
    q.Consumed(iov[0].iov_len);
  }
  EXPECT_EQ(written, "first\n" + LostNotice("subscriber", 1) + "third\n");
}

TEST(PrometheusText, FamiliesSamplesAndEscaping) {
  PrometheusText t;
  t.Family("stockade_drop_count_total", "counter", "Packets dropped.\nBy reason.");
  t.Sample("stockade_drop_count_total", {{"reason", "POLICY_DENIED"}, {"direction", "egress"}}, 12);
  t.Sample("stockade_drop_count_total", {{"reason", "a\"b\\c\nd"}}, 1e16);
  t.Family("stockade_docker_sync_lag_seconds", "gauge", "Lag.");
  t.Sample("stockade_docker_sync_lag_seconds", 0.0125);
  EXPECT_EQ(t.text(),
            "# HELP stockade_drop_count_total Packets dropped.\\nBy reason.\n"
            "# TYPE stockade_drop_count_total counter\n"
            "stockade_drop_count_total{reason=\"POLICY_DENIED\",direction=\"egress\"} 12\n"
            "stockade_drop_count_total{reason=\"a\\\"b\\\\c\\nd\"} 1e+16\n"
            "# HELP stockade_docker_sync_lag_seconds Lag.\n"
            "# TYPE stockade_docker_sync_lag_seconds gauge\n"
            "stockade_docker_sync_lag_seconds 0.0125\n");
}

}  // namespace
}  // namespace stockade

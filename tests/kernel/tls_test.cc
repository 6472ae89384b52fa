// SPDX-License-Identifier: Apache-2.0
//
// requireTLS through the real programs: the client's first payload on a
// requireTLS flow must be a TLS ClientHello, or the flow is cut. Web is the
// client (web -> backend tcp/443, through TC ingress or XDP, which sees what
// web sends) and the server (frontend -> web tcp/443, through TC egress).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "tests/kernel/web_endpoint.h"

namespace stockade::testing {
namespace {

constexpr Hook kIn = Hook::kTcEgress;  // what web receives
constexpr uint16_t kTls = 443, kPlain = 5432;
// A plaintext allow naming backend, and a requireTLS allow for any remote, on
// one port: the strict one wins, and its rule is the one a drop reports.
constexpr uint32_t kTlsAnyRule = 21, kPlainBackendRule = 22, kTlsInRule = 20;

// A ClientHello record: TLS 1.2 legacy version, no session id, one suite,
// null compression, no extensions; the record and handshake lengths agree.
std::vector<uint8_t> ClientHello(uint8_t record_minor = 1) {
  constexpr size_t kBody = 2 + 32 + 1 + 4 + 2 + 2;
  // Indexed writes, not initializer lists: gcc 12 warns falsely (array-bounds) on those.
  std::vector<uint8_t> r(9 + kBody, 0);
  r[0] = 22;  // handshake
  r[1] = 3;
  r[2] = record_minor;
  r[4] = kBody + 4;  // record length
  r[5] = 1;          // ClientHello
  r[8] = kBody;      // handshake length
  r[9] = 3;          // legacy_version 3.3
  r[10] = 3;
  std::fill(r.begin() + 11, r.begin() + 43, 0x5a);  // random; then an empty session id
  r[45] = 2;                                         // one cipher suite: TLS_AES_128_GCM_SHA256
  r[46] = 0x13;
  r[47] = 0x01;
  r[48] = 1;  // one compression method, null; then no extensions
  return r;
}

std::vector<uint8_t> Text(const std::string& s) { return {s.begin(), s.end()}; }

class TlsTest : public WebEndpointTest, public ::testing::WithParamInterface<Hook> {
 protected:
  void SetUp() override {
    WebEndpointTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    SetTlsRules();
  }

  void SetTlsRules() {
    std::vector<DatapathRule> rules = WebRules();
    rules.push_back({.rule_id = kTlsInRule, .local_identity = kWeb, .remote_identity = kFrontend,
                     .direction = DIR_INGRESS, .protocol = IPPROTO_TCP, .ports = {kTls, kTls}, .require_tls = true});
    rules.push_back({.rule_id = kTlsAnyRule, .local_identity = kWeb, .direction = DIR_EGRESS,
                     .protocol = IPPROTO_TCP, .ports = {kTls, kTls}, .require_tls = true});
    rules.push_back({.rule_id = kPlainBackendRule, .local_identity = kWeb, .remote_identity = kBackend,
                     .direction = DIR_EGRESS, .protocol = IPPROTO_TCP, .ports = {kTls, kTls}});
    SetRules(rules);
  }

  Hook Out() const { return GetParam(); }  // what web sends: TC ingress or XDP

  // web -> backend, from web's port `sport`.
  std::vector<uint8_t> Client(uint16_t sport, uint8_t flags, std::vector<uint8_t> payload = {},
                              uint16_t dport = kTls) {
    PacketBuilder b = FromWeb();
    b.Tcp({.sport = sport, .dport = dport, .flags = flags});
    if (!payload.empty()) b.Payload(std::move(payload));
    return b.Build();
  }
  std::vector<uint8_t> Server(uint16_t sport, uint8_t flags, std::vector<uint8_t> payload = {},
                              uint16_t dport = kTls) {
    PacketBuilder b = ToWeb(kBackendIp);
    b.Tcp({.sport = dport, .dport = sport, .flags = flags});
    if (!payload.empty()) b.Payload(std::move(payload));
    return b.Build();
  }

  // SYN, SYN-ACK, ACK: a flow the policy allowed, no payload yet.
  void Handshake(uint16_t sport, uint16_t dport = kTls) {
    ASSERT_TRUE(Passes(Out(), Client(sport, kTcpSyn, {}, dport)));
    ASSERT_TRUE(Passes(kIn, Server(sport, kTcpSyn | kTcpAck, {}, dport)));
    ASSERT_TRUE(Passes(Out(), Client(sport, kTcpAck, {}, dport)));
  }

  // The records after a Handshake(): the first is the flow's, made by its
  // SYN (a new flow's record); the rest are returned.
  std::vector<drop_event> DrainAfterTheFlowsRecord() {
    std::vector<drop_event> events = DrainEvents();
    EXPECT_FALSE(events.empty());
    if (events.empty()) return events;
    EXPECT_EQ(events[0].verdict, VERDICT_FORWARDED);
    EXPECT_EQ(events[0].rule_id, kTlsAnyRule) << "the requireTLS rule allowed the flow";
    events.erase(events.begin());
    return events;
  }

  // The conntrack entry of web's flow from `sport`.
  ct_entry Entry(uint16_t sport) {
    ct_entry found{};
    int n = 0;
    EXPECT_TRUE(dp_->conntrack()
                    .ForEach([&](const ct_key& k, const ct_entry& e) {
                      if (ntohs(k.port_a) == sport || ntohs(k.port_b) == sport) {
                        found = e;
                        ++n;
                      }
                    })
                    .ok());
    EXPECT_EQ(n, 1) << "flows from port " << sport;
    return found;
  }

  uint64_t TlsDrops(uint8_t dir = DIR_EGRESS) { return Count(DROP_TLS_REQUIRED, dir, VERDICT_DROPPED); }
};

TEST_P(TlsTest, ClientHelloFirstThenEverythingPasses) {
  Handshake(41000);
  EXPECT_TRUE(Passes(Out(), Client(41000, kTcpAck | kTcpPsh, ClientHello())));
  EXPECT_EQ(Entry(41000).tls_state, CT_TLS_CLIENT_HELLO);
  EXPECT_TRUE(Entry(41000).flags & CT_F_TLS_REQUIRED);
  EXPECT_TRUE(Passes(kIn, Server(41000, kTcpAck | kTcpPsh, Text("\x16\x03\x03 server hello and the rest"))));
  // Once verified, anything goes: it is the TLS stack's business now.
  EXPECT_TRUE(Passes(Out(), Client(41000, kTcpAck | kTcpPsh, Text("GET / HTTP/1.1\r\n"))));
  EXPECT_TRUE(Passes(Out(), Client(41000, kTcpAck | kTcpFin)));
  EXPECT_EQ(TlsDrops(), 0u);
  EXPECT_TRUE(DrainAfterTheFlowsRecord().empty()) << "no drop, and no record for the flow's later packets";
}

TEST_P(TlsTest, PlaintextFirstPayloadCutsTheFlowBothWays) {
  Handshake(41001);
  EXPECT_FALSE(Passes(Out(), Client(41001, kTcpAck | kTcpPsh, Text("GET / HTTP/1.1\r\nHost: backend\r\n\r\n"))));
  EXPECT_EQ(Entry(41001).tls_state, CT_TLS_PLAINTEXT);
  EXPECT_FALSE(Passes(Out(), Client(41001, kTcpAck)));
  EXPECT_FALSE(Passes(kIn, Server(41001, kTcpAck | kTcpPsh, Text("HTTP/1.1 200 OK\r\n"))));
  EXPECT_FALSE(Passes(Out(), Client(41001, kTcpAck | kTcpPsh, ClientHello()))) << "too late";
  EXPECT_FALSE(Passes(kIn, Server(41001, kTcpAck | kTcpRst)));
  EXPECT_EQ(TlsDrops(DIR_EGRESS) + TlsDrops(DIR_INGRESS), 5u);

  std::vector<drop_event> events = DrainAfterTheFlowsRecord();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].reason, DROP_TLS_REQUIRED);
  EXPECT_EQ(events[0].verdict, VERDICT_DROPPED);
  EXPECT_EQ(events[0].rule_id, kTlsAnyRule) << "the requireTLS rule decided, not the plaintext allow";
  EXPECT_EQ(events[0].remote_identity, kBackend);
  EXPECT_EQ(ntohs(events[0].dport), kTls);

  // A new connection on the same ports is judged afresh.
  EXPECT_TRUE(Passes(Out(), Client(41001, kTcpSyn)));
  EXPECT_EQ(Entry(41001).tls_state, CT_TLS_UNSEEN);
}

TEST_P(TlsTest, AuditReportsOnceAndPasses) {
  SetWeb(ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS | ENDPOINT_F_AUDIT);
  Handshake(41002);
  EXPECT_TRUE(Passes(Out(), Client(41002, kTcpAck | kTcpPsh, Text("PING\r\n"))));
  EXPECT_TRUE(Passes(kIn, Server(41002, kTcpAck | kTcpPsh, Text("PONG\r\n"))));
  EXPECT_TRUE(Passes(Out(), Client(41002, kTcpAck | kTcpPsh, Text("PING\r\n"))));
  EXPECT_EQ(Count(DROP_TLS_REQUIRED, DIR_EGRESS, VERDICT_AUDIT), 1u);
  EXPECT_EQ(TlsDrops(), 0u);
  std::vector<drop_event> events = DrainAfterTheFlowsRecord();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, DROP_TLS_REQUIRED);
  EXPECT_EQ(events[0].verdict, VERDICT_AUDIT);
  EXPECT_EQ(events[0].rule_id, kTlsAnyRule);
  EXPECT_EQ(Entry(41002).tls_state, CT_TLS_PLAINTEXT) << "the report still sees it";
}

TEST_P(TlsTest, AuditOnlyRequirementReportsAndPasses) {
  std::vector<DatapathRule> rules = WebRules();
  rules.push_back({.rule_id = kTlsAnyRule, .local_identity = kWeb, .direction = DIR_EGRESS,
                   .protocol = IPPROTO_TCP, .ports = {kTls, kTls}, .audit = true, .require_tls = true});
  SetRules(rules);
  Handshake(41003);
  EXPECT_TRUE(Passes(Out(), Client(41003, kTcpAck | kTcpPsh, Text("PING\r\n"))));
  EXPECT_TRUE(Passes(Out(), Client(41003, kTcpAck)));
  EXPECT_EQ(Count(DROP_TLS_REQUIRED, DIR_EGRESS, VERDICT_AUDIT), 1u);
  EXPECT_EQ(TlsDrops(), 0u);
}

TEST_P(TlsTest, MalformedRecordsAreNotAClientHello) {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> cases;
  auto with = [](size_t at, uint8_t value) {
    std::vector<uint8_t> r = ClientHello();
    r[at] = value;
    return r;
  };
  cases.push_back({"application data record", with(0, 23)});
  cases.push_back({"SSL 2.0 version", with(1, 2)});
  cases.push_back({"minor version 5", with(2, 5)});
  std::vector<uint8_t> zero = ClientHello();
  zero[3] = zero[4] = 0;
  cases.push_back({"record length 0", zero});
  std::vector<uint8_t> huge = ClientHello();
  huge[3] = (16384 + 257) >> 8;
  huge[4] = (16384 + 257) & 0xff;
  cases.push_back({"record length past 16 KiB + 256", huge});
  cases.push_back({"ServerHello handshake", with(5, 2)});
  cases.push_back({"ClientHello too short to hold its fields", with(8, 10)});
  std::vector<uint8_t> big = ClientHello();
  big[6] = 0x10;
  cases.push_back({"ClientHello of a MiB", big});
  for (size_t n = 1; n <= 8; ++n) {
    std::vector<uint8_t> head = ClientHello();
    head.resize(n);
    cases.push_back({"first " + std::to_string(n) + " bytes of a ClientHello", head});
  }
  uint16_t sport = 42000;
  for (const auto& [what, payload] : cases) {
    SCOPED_TRACE(what);
    Handshake(++sport);
    EXPECT_FALSE(Passes(Out(), Client(sport, kTcpAck | kTcpPsh, payload)));
    EXPECT_FALSE(Passes(Out(), Client(sport, kTcpAck)));
  }
  // And what a TLS stack does send: records of version 3.0 to 3.3.
  for (uint8_t minor = 0; minor <= 3; ++minor) {
    Handshake(++sport);
    EXPECT_TRUE(Passes(Out(), Client(sport, kTcpAck | kTcpPsh, ClientHello(minor)))) << int(minor);
  }
}

TEST_P(TlsTest, PayloadOnTheSyn) {
  EXPECT_TRUE(Passes(Out(), Client(43000, kTcpSyn, ClientHello())));
  EXPECT_EQ(Entry(43000).tls_state, CT_TLS_CLIENT_HELLO);
  EXPECT_TRUE(Passes(kIn, Server(43000, kTcpSyn | kTcpAck)));

  EXPECT_FALSE(Passes(Out(), Client(43001, kTcpSyn, Text("GET / HTTP/1.0\r\n\r\n"))));
  EXPECT_FALSE(Passes(kIn, Server(43001, kTcpSyn | kTcpAck)));
  EXPECT_FALSE(Passes(Out(), Client(43001, kTcpAck)));
}

TEST_P(TlsTest, ServerSpeakingFirstDoesNotDecide) {
  Handshake(43100);
  EXPECT_TRUE(Passes(kIn, Server(43100, kTcpAck | kTcpPsh, Text("220 backend ESMTP\r\n"))));
  EXPECT_EQ(Entry(43100).tls_state, CT_TLS_UNSEEN);
  EXPECT_TRUE(Passes(Out(), Client(43100, kTcpAck | kTcpPsh, ClientHello())));

  Handshake(43101);
  EXPECT_TRUE(Passes(kIn, Server(43101, kTcpAck | kTcpPsh, Text("220 backend ESMTP\r\n"))));
  EXPECT_FALSE(Passes(Out(), Client(43101, kTcpAck | kTcpPsh, Text("EHLO web\r\n"))));
}

TEST_P(TlsTest, MidStreamFlowIsJudgedOnItsFirstPayload) {
  // No SYN seen (an agent restart, say): the first payload still decides.
  EXPECT_FALSE(Passes(Out(), Client(43200, kTcpAck | kTcpPsh, Text("plaintext"))));
  EXPECT_FALSE(Passes(kIn, Server(43200, kTcpAck)));
  EXPECT_TRUE(Passes(Out(), Client(43201, kTcpAck | kTcpPsh, ClientHello())));
}

TEST_P(TlsTest, FlowWithoutRequireTlsIsOnlyClassified) {
  Handshake(43300, kPlain);
  EXPECT_TRUE(Passes(Out(), Client(43300, kTcpAck | kTcpPsh, Text("SELECT 1;"), kPlain)));
  EXPECT_TRUE(Passes(Out(), Client(43300, kTcpAck, {}, kPlain)));
  ct_entry e = Entry(43300);
  EXPECT_EQ(e.tls_state, CT_TLS_PLAINTEXT);
  EXPECT_FALSE(e.flags & CT_F_TLS_REQUIRED);
  EXPECT_EQ(TlsDrops(), 0u);

  Handshake(43301, kPlain);
  EXPECT_TRUE(Passes(Out(), Client(43301, kTcpAck | kTcpPsh, ClientHello(), kPlain)));
  EXPECT_EQ(Entry(43301).tls_state, CT_TLS_CLIENT_HELLO);
}

TEST_P(TlsTest, WebAsTheServer) {
  auto from_frontend = [](uint16_t sport, uint8_t flags, std::vector<uint8_t> payload = {}) {
    PacketBuilder b = ToWeb(kFrontendIp);
    b.Tcp({.sport = sport, .dport = kTls, .flags = flags});
    if (!payload.empty()) b.Payload(std::move(payload));
    return b.Build();
  };
  auto to_frontend = [](uint16_t dport, uint8_t flags) {
    return FromWeb(kFrontendIp).Tcp({.sport = kTls, .dport = dport, .flags = flags}).Build();
  };
  EXPECT_TRUE(Passes(kIn, from_frontend(44000, kTcpSyn)));
  EXPECT_TRUE(Passes(Out(), to_frontend(44000, kTcpSyn | kTcpAck)));
  EXPECT_TRUE(Passes(kIn, from_frontend(44000, kTcpAck | kTcpPsh, ClientHello())));

  EXPECT_TRUE(Passes(kIn, from_frontend(44001, kTcpSyn)));
  EXPECT_TRUE(Passes(Out(), to_frontend(44001, kTcpSyn | kTcpAck)));
  EXPECT_FALSE(Passes(kIn, from_frontend(44001, kTcpAck | kTcpPsh, Text("GET / HTTP/1.1\r\n"))));
  EXPECT_FALSE(Passes(Out(), to_frontend(44001, kTcpAck)));
  EXPECT_EQ(TlsDrops(DIR_INGRESS), 1u);
  std::vector<drop_event> events = DrainEvents();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].rule_id, kTlsInRule);
}

TEST_P(TlsTest, Ipv6) {
  SetRules({{.rule_id = kTlsAnyRule, .local_identity = kWeb, .direction = DIR_EGRESS, .protocol = IPPROTO_TCP,
             .ports = {kTls, kTls}, .require_tls = true}});
  EXPECT_TRUE(Passes(Out(), FromWeb6().Tcp({.sport = 45000, .dport = kTls, .flags = kTcpSyn}).Build()));
  EXPECT_TRUE(
      Passes(Out(), FromWeb6().Tcp({.sport = 45000, .dport = kTls, .flags = kTcpAck}).Payload(ClientHello()).Build()));
  EXPECT_TRUE(Passes(Out(), FromWeb6().Tcp({.sport = 45001, .dport = kTls, .flags = kTcpSyn}).Build()));
  EXPECT_FALSE(
      Passes(Out(), FromWeb6().Tcp({.sport = 45001, .dport = kTls, .flags = kTcpAck}).Payload(Text("hello")).Build()));
}

TEST_P(TlsTest, RequirementFollowsAPolicyChange) {
  // Plaintext while the port allowed it; then the policy requires TLS: the flow is cut.
  std::vector<DatapathRule> plain = WebRules();
  plain.push_back({.rule_id = 30, .local_identity = kWeb, .direction = DIR_EGRESS, .protocol = IPPROTO_TCP,
                   .ports = {kTls, kTls}});
  SetRules(plain);
  Handshake(46000);
  ASSERT_TRUE(Passes(Out(), Client(46000, kTcpAck | kTcpPsh, Text("plaintext"))));
  SetTlsRules();
  SetWeb(ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS, /*revision=*/2);
  EXPECT_FALSE(Passes(Out(), Client(46000, kTcpAck | kTcpPsh, Text("more"))));
  EXPECT_FALSE(Passes(kIn, Server(46000, kTcpAck)));
}

INSTANTIATE_TEST_SUITE_P(TcAndXdp, TlsTest, ::testing::Values(Hook::kTcIngress, Hook::kXdp),
                         [](const ::testing::TestParamInfo<Hook>& info) {
                           return info.param == Hook::kXdp ? std::string("Xdp") : std::string("Tc");
                         });

}  // namespace
}  // namespace stockade::testing

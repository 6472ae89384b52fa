// SPDX-License-Identifier: Apache-2.0
#include "stockade/conntrack/tls_report.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstring>

namespace stockade {
namespace {

constexpr uint64_t kNow = 1'000'000'000'000ull;
constexpr endpoint_key kWebHook{.netns_cookie = 7, .ifindex = 12};
constexpr endpoint_key kDbHook{.netns_cookie = 7, .ifindex = 13};

IpAddress Addr(const char* text) { return ParseIpAddress(text).value(); }

std::vector<TlsReportEndpoint> Endpoints() {
  return {{.key = kWebHook, .name = "web", .ipv4 = Addr("10.0.0.2")},
          {.key = kDbHook, .name = "db", .ipv4 = Addr("10.0.0.3"), .ipv6 = Addr("fd00::3")}};
}

// A flow seen at `hook`, from client to server:port, as the datapath stores it.
ConntrackFlow Flow(endpoint_key hook, uint8_t direction, const char* client, uint16_t cport, const char* server,
                   uint16_t port, uint8_t tls_state, bool require_tls = false, uint8_t protocol = IPPROTO_TCP) {
  ConntrackFlow f{};
  IpAddress c = Addr(client), s = Addr(server);
  // Canonical order: the lower address first, as ct_key_for() does (ports break ties; not needed here).
  const bool client_is_a = std::memcmp(c.bytes.data(), s.bytes.data(), 16) < 0;
  std::memcpy(f.key.addr_a, (client_is_a ? c : s).bytes.data(), 16);
  std::memcpy(f.key.addr_b, (client_is_a ? s : c).bytes.data(), 16);
  f.key.port_a = htons(client_is_a ? cport : port);
  f.key.port_b = htons(client_is_a ? port : cport);
  f.key.ifindex = hook.ifindex;
  f.key.netns_cookie = hook.netns_cookie;
  f.key.protocol = protocol;
  f.key.family = c.family;
  f.entry.expires_ns = kNow + 1;
  f.entry.direction = direction;
  f.entry.flags = (client_is_a ? CT_F_ORIGIN_IS_A : 0) | (require_tls ? CT_F_TLS_REQUIRED : 0);
  f.entry.policy_port = htons(port);
  f.entry.tls_state = tls_state;
  return f;
}

TEST(TlsReportTest, CountsPerEndpointPairPortAndRequirement) {
  std::vector<ConntrackFlow> flows = {
      // db serves 443 to web: seen at db's hook as ingress, at web's as egress.
      Flow(kDbHook, DIR_INGRESS, "10.0.0.2", 40000, "10.0.0.3", 443, CT_TLS_CLIENT_HELLO, true),
      Flow(kDbHook, DIR_INGRESS, "10.0.0.2", 40001, "10.0.0.3", 443, CT_TLS_PLAINTEXT, true),
      Flow(kDbHook, DIR_INGRESS, "10.0.0.2", 40002, "10.0.0.3", 443, CT_TLS_UNSEEN, true),
      Flow(kDbHook, DIR_INGRESS, "10.0.0.2", 40003, "10.0.0.3", 443, CT_TLS_CLIENT_HELLO, true),
      Flow(kWebHook, DIR_EGRESS, "10.0.0.2", 40000, "10.0.0.3", 443, CT_TLS_CLIENT_HELLO),
      // web speaks plaintext to a world address; db asks web (db's address is the higher one: b).
      Flow(kWebHook, DIR_EGRESS, "10.0.0.2", 40010, "203.0.113.9", 80, CT_TLS_PLAINTEXT),
      Flow(kDbHook, DIR_EGRESS, "10.0.0.3", 40020, "10.0.0.2", 8080, CT_TLS_PLAINTEXT),
  };
  std::vector<TlsReportRow> rows = AggregateTlsFlows(flows, Endpoints(), kNow);
  std::vector<TlsReportRow> want = {
      {.local = "db", .remote = "web", .direction = DIR_INGRESS, .port = 443, .require_tls = true, .tls = 2,
       .plaintext = 1, .no_payload = 1},
      {.local = "db", .remote = "web", .direction = DIR_EGRESS, .port = 8080, .plaintext = 1},
      {.local = "web", .remote = "203.0.113.9", .direction = DIR_EGRESS, .port = 80, .plaintext = 1},
      {.local = "web", .remote = "db", .direction = DIR_EGRESS, .port = 443, .tls = 1},
  };
  EXPECT_EQ(rows, want);
}

TEST(TlsReportTest, SkipsExpiredNonTcpAndUnhookedFlows) {
  ConntrackFlow expired = Flow(kWebHook, DIR_EGRESS, "10.0.0.2", 1, "10.0.0.3", 443, CT_TLS_CLIENT_HELLO);
  expired.entry.expires_ns = kNow;
  ConntrackFlow udp = Flow(kWebHook, DIR_EGRESS, "10.0.0.2", 1, "10.0.0.3", 53, CT_TLS_UNSEEN, false, IPPROTO_UDP);
  ConntrackFlow elsewhere = Flow({.netns_cookie = 8, .ifindex = 12}, DIR_EGRESS, "10.0.0.2", 1, "10.0.0.3", 443,
                                 CT_TLS_CLIENT_HELLO);
  EXPECT_TRUE(AggregateTlsFlows({expired, udp, elsewhere}, Endpoints(), kNow).empty());
}

TEST(TlsReportTest, RequireTlsSplitsRowsAndJsonNamesTheFields) {
  std::vector<TlsReportRow> rows = AggregateTlsFlows(
      {Flow(kDbHook, DIR_INGRESS, "fd00::9", 5, "fd00::3", 443, CT_TLS_PLAINTEXT, true),
       Flow(kDbHook, DIR_INGRESS, "fd00::9", 6, "fd00::3", 443, CT_TLS_PLAINTEXT, false)},
      Endpoints(), kNow);
  ASSERT_EQ(rows.size(), 2u);
  nlohmann::json j = TlsReportJson(rows);
  ASSERT_EQ(j["flows"].size(), 2u);
  EXPECT_EQ(j["flows"][0]["remote"], "fd00::9");
  EXPECT_EQ(j["flows"][0]["direction"], "ingress");
  EXPECT_EQ(j["flows"][0]["port"], 443);
  EXPECT_EQ(j["flows"][0]["require_tls"], false);
  EXPECT_EQ(j["flows"][1]["require_tls"], true);
  EXPECT_EQ(j["flows"][1]["plaintext"], 1);
  EXPECT_EQ(j["flows"][1]["tls"], 0);
}

}  // namespace
}  // namespace stockade

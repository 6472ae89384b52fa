// SPDX-License-Identifier: Apache-2.0
//
// The scene most kernel tests play in: the endpoint under test is "web"
// (identity 300) on a host-side veth, so TC ingress sees what web sends
// (egress) and TC egress what it receives (ingress). Its peers:
//   backend   301  10.0.0.3  fd00::3
//   frontend  302  10.0.0.4  fd00::4
//   partner   400  198.51.100.0/24 (a CIDR identity)
//   anything else is the world.
// Rules are numbered as in kRules below; drop events report these numbers.
#ifndef STOCKADE_TESTS_KERNEL_WEB_ENDPOINT_H_
#define STOCKADE_TESTS_KERNEL_WEB_ENDPOINT_H_

#include <netinet/in.h>

#include "testlib/packet_builder.h"
#include "tests/support/bpf_test_env.h"

namespace stockade::testing {

inline constexpr uint32_t kWeb = 300, kBackend = 301, kFrontend = 302, kPartner = 400;
inline constexpr char kWebMac[] = "02:00:00:00:00:02";
inline constexpr char kWebIp[] = "10.0.0.2";
inline constexpr char kWebIp6[] = "fd00::2";
inline constexpr char kWebLinkLocal[] = "fe80::2";
inline constexpr char kBackendIp[] = "10.0.0.3";
inline constexpr char kBackendIp6[] = "fd00::3";
inline constexpr char kFrontendIp[] = "10.0.0.4";
inline constexpr char kWorldIp[] = "203.0.113.9";  // TEST-NET-3: never routed anywhere

inline std::vector<DatapathRule> WebRules() {
  const uint8_t in = DIR_INGRESS, out = DIR_EGRESS;
  return {
      {.rule_id = 1, .local_identity = kWeb, .remote_identity = kFrontend, .direction = in, .protocol = IPPROTO_TCP,
       .ports = {80, 80}},
      {.rule_id = 2, .local_identity = kWeb, .remote_identity = kBackend, .direction = out, .protocol = IPPROTO_TCP,
       .ports = {5432, 5432}},
      {.rule_id = 3, .local_identity = kWeb, .remote_identity = kBackend, .direction = out, .protocol = IPPROTO_UDP,
       .ports = {53, 53}},
      {.rule_id = 4, .local_identity = kWeb, .direction = out, .protocol = IPPROTO_TCP, .ports = {8000, 8999}},
      {.rule_id = 5, .local_identity = kWeb, .direction = out, .protocol = IPPROTO_TCP, .ports = {8666, 8666},
       .action = POLICY_ACTION_DENY},
      {.rule_id = 6, .local_identity = kWeb, .direction = in, .protocol = IPPROTO_ICMP, .ports = {8, 8}},
      {.rule_id = 7, .local_identity = kWeb, .remote_identity = kPartner, .direction = out},
      {.rule_id = 8, .local_identity = kWeb, .remote_identity = kBackend, .direction = out, .protocol = IPPROTO_IPIP},
      {.rule_id = 9, .local_identity = kWeb, .remote_identity = kBackend, .direction = out, .protocol = IPPROTO_TCP,
       .ports = {6000, 6000}, .action = POLICY_ACTION_DENY},
      {.rule_id = 10, .local_identity = kWeb, .direction = out, .protocol = IPPROTO_TCP, .ports = {6000, 6000}},
      {.rule_id = 11, .local_identity = kWeb, .remote_identity = kBackend, .direction = out, .protocol = IPPROTO_UDP,
       .ports = {7000, 7000}},
      {.rule_id = 12, .local_identity = kWeb, .direction = out, .protocol = IPPROTO_UDP, .ports = {7000, 7000},
       .action = POLICY_ACTION_DENY},
      {.rule_id = 13, .local_identity = kWeb, .remote_identity = kBackend, .direction = out, .protocol = IPPROTO_ICMP,
       .ports = {8, 8}},
      {.rule_id = 14, .local_identity = kWeb, .remote_identity = kBackend, .direction = out,
       .protocol = IPPROTO_ICMPV6, .ports = {128, 128}},
  };
}

class WebEndpointTest : public DatapathTest {
 protected:
  void SetUp() override {
    DatapathTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    SetUpMapsAgain();
  }

  // Fills the maps of the current datapath (call again after Reload()).
  void SetUpMapsAgain() {
    SetWeb(ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS);
    SetIdentity(std::string(kBackendIp) + "/32", kBackend);
    SetIdentity(std::string(kBackendIp6) + "/128", kBackend);
    SetIdentity(std::string(kFrontendIp) + "/32", kFrontend);
    SetIdentity("fd00::4/128", kFrontend);
    SetIdentity("198.51.100.0/24", kPartner);
    SetRules(WebRules());
  }

  void SetWeb(uint32_t flags, uint32_t revision = 1) {
    SetEndpoint({.identity = kWeb, .ipv4 = kWebIp, .ipv6 = kWebIp6, .ipv6_link_local = kWebLinkLocal,
                 .mac = kWebMac, .flags = flags, .policy_revision = revision});
  }
};

// Frames web sends (seen at TC ingress of its host-side veth) and receives.
inline PacketBuilder FromWeb(const char* dst = kBackendIp, const char* src = kWebIp) {
  PacketBuilder b;
  b.Ethernet({.src = Mac(kWebMac), .dst = Mac("02:00:00:00:00:ff")}).Ipv4({.src = Ipv4(src), .dst = Ipv4(dst)});
  return b;
}
inline PacketBuilder ToWeb(const char* src, const char* dst = kWebIp) {
  PacketBuilder b;
  b.Ethernet({.src = Mac("02:00:00:00:00:ff"), .dst = Mac(kWebMac)}).Ipv4({.src = Ipv4(src), .dst = Ipv4(dst)});
  return b;
}
inline PacketBuilder FromWeb6(const char* dst = kBackendIp6, const char* src = kWebIp6) {
  PacketBuilder b;
  b.Ethernet({.src = Mac(kWebMac), .dst = Mac("02:00:00:00:00:ff")}).Ipv6({.src = Ipv6(src), .dst = Ipv6(dst)});
  return b;
}
inline PacketBuilder ToWeb6(const char* src, const char* dst = kWebIp6) {
  PacketBuilder b;
  b.Ethernet({.src = Mac("02:00:00:00:00:ff"), .dst = Mac(kWebMac)}).Ipv6({.src = Ipv6(src), .dst = Ipv6(dst)});
  return b;
}

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_KERNEL_WEB_ENDPOINT_H_

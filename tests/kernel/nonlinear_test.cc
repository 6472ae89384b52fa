// SPDX-License-Identifier: Apache-2.0
//
// The datapath on live frames whose headers are not in the skb's linear part,
// as an AF_PACKET ring sends them (trafgen, the benchmark's flood generator:
// only the Ethernet header is linear). BPF_PROG_TEST_RUN makes every frame
// linear, so this is the only test of packet_from_skb()'s pull: each frame
// must get, live and split, the verdict and reason it gets linear through
// BPF_PROG_TEST_RUN, and a probe ahead of the datapath witnesses that the
// frames were split.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "linear_probe_bpf.skel.h"
#include "stockade/datapath/attach.h"
#include "stockade/netns/netns.h"
#include "testlib/packet_builder.h"
#include "tests/support/bpf_test_env.h"
#include "tools/bench/rules.h"
#include "tools/bench/testbed.h"
#include "tools/bench/traffic.h"

namespace stockade::testing {
namespace {

constexpr uint32_t kClientIdentity = 300;
constexpr uint32_t kServerIdentity = 301;
constexpr char kClientIpv6[] = "fd00:214::1";
constexpr char kServerIpv6[] = "fd00:214::2";
constexpr uint64_t kCopies = 25;

struct Case {
  std::string what;
  std::vector<uint8_t> frame;
  int reason;  // what the datapath must say, live and through BPF_PROG_TEST_RUN
};

// trafgen's configuration for `frame`, byte by byte.
std::string RawTrafgenConfig(const std::vector<uint8_t>& frame) {
  std::string out = "{\n";
  for (uint8_t byte : frame) absl::StrAppendFormat(&out, "0x%02x,\n", byte);
  return out + "}\n";
}

class LinearProbe {
 public:
  ~LinearProbe() { linear_probe_bpf__destroy(skel_); }
  [[nodiscard]] bool Load() {
    skel_ = linear_probe_bpf__open_and_load();
    return skel_ != nullptr;
  }
  int prog_fd() const { return bpf_program__fd(skel_->progs.linear_probe); }
  uint64_t Count(uint32_t slot) const {
    uint64_t value = 0;
    bpf_map_lookup_elem(bpf_map__fd(skel_->maps.linear_probe_counts), &slot, &value);
    return value;
  }

 private:
  linear_probe_bpf* skel_ = nullptr;
};

class NonlinearFrameTest : public DatapathTest {};

TEST_F(NonlinearFrameTest, SplitHeadersGetTheVerdictsOfLinearOnes) {
  Reload({.conntrack_max = 16384, .events_ringbuf_bytes = 1u << 18});
  lab::Topology topology;
  auto bed = bench::BuildTestbed(topology, "nl");
  ASSERT_TRUE(bed.ok()) << bed.status();

  // The client container, egress enforced: its host-side veth's TC ingress
  // sees what it sends. The same endpoint on BPF_PROG_TEST_RUN's interface.
  EndpointSpec client{.identity = kClientIdentity,
                      .ipv4 = bench::kClientIp,
                      .ipv6 = kClientIpv6,
                      .mac = absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", bed->client_mac[0], bed->client_mac[1],
                                             bed->client_mac[2], bed->client_mac[3], bed->client_mac[4],
                                             bed->client_mac[5]),
                      .flags = ENDPOINT_F_ENFORCE_EGRESS};
  SetEndpoint(client);
  ASSERT_TRUE(dp_->endpoints()
                  .Update({.netns_cookie = bed->host_cookie, .ifindex = bed->host_cli_ifindex},
                          MakeEndpointInfo(client))
                  .ok());
  SetIdentity(absl::StrCat(bench::kServerIp, "/32"), kServerIdentity);
  SetIdentity(absl::StrCat(kServerIpv6, "/128"), kServerIdentity);
  SetRules({{.rule_id = 1, .local_identity = kClientIdentity, .remote_identity = kServerIdentity,
             .direction = DIR_EGRESS, .protocol = IPPROTO_UDP, .ports = {bench::kUdpPort, bench::kUdpPort}},
            {.rule_id = 2, .local_identity = kClientIdentity, .remote_identity = kServerIdentity,
             .direction = DIR_EGRESS, .protocol = IPPROTO_TCP, .ports = {bench::kTcpRrPort, bench::kTcpRrPort}}});

  // Nothing but the test's frames on the client's link: no IPv6 neighbour
  // discovery or MLD from its stack (the test's IPv6 frames are raw).
  auto quiet = topology.Run(bed->client, {"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                                          "net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.eth0.disable_ipv6=1"});
  ASSERT_TRUE(quiet.ok()) << quiet.status();

  LinearProbe probe;
  ASSERT_TRUE(probe.Load());
  std::vector<Attachment> attached;
  {
    auto guard = NetnsGuard::Enter(bed->host.path);
    ASSERT_TRUE(guard.ok()) << guard.status();
    // The probe first: TCX runs programs in the order they were attached.
    for (int fd : {probe.prog_fd(), dp_->tc_ingress_fd()}) {
      auto a = Attachment::AttachTc(fd, bed->host_cli_ifindex, TcHook::kIngress, TcAttachMode::kAuto);
      ASSERT_TRUE(a.ok()) << a.status();
      attached.push_back(std::move(*a));
    }
  }

  EthernetOptions eth{.src = bed->client_mac, .dst = bed->host_cli_mac};
  Ipv4Options v4{.src = Ipv4(bench::kClientIp), .dst = Ipv4(bench::kServerIp)};
  Ipv4Options spoofed = v4;
  spoofed.src = Ipv4("10.214.0.99");
  Ipv4Options with_options = v4;
  with_options.options = {1, 1, 1, 1};  // NOPs
  Ipv6Options v6{.src = Ipv6(kClientIpv6), .dst = Ipv6(kServerIpv6)};
  const std::vector<Case> cases = {
      {"IPv4 UDP, allowed", PacketBuilder().Ethernet(eth).Ipv4(v4).Udp({.dport = bench::kUdpPort}).Build(),
       REASON_NONE},
      {"IPv4 UDP, denied", PacketBuilder().Ethernet(eth).Ipv4(v4).Udp({.dport = bench::kDeniedUdpPort}).Build(),
       DROP_POLICY_DENIED},
      {"IPv4 UDP, spoofed source", PacketBuilder().Ethernet(eth).Ipv4(spoofed).Udp({.dport = bench::kUdpPort}).Build(),
       DROP_SPOOFED_SOURCE},
      {"IPv4 TCP SYN, allowed",
       PacketBuilder().Ethernet(eth).Ipv4(v4).Tcp({.dport = bench::kTcpRrPort, .flags = kTcpSyn}).Build(),
       REASON_NONE},
      {"IPv4 TCP SYN, denied", PacketBuilder().Ethernet(eth).Ipv4(v4).Tcp({.dport = 9, .flags = kTcpSyn}).Build(),
       DROP_POLICY_DENIED},
      {"IPv4 with options, UDP denied",
       PacketBuilder().Ethernet(eth).Ipv4(with_options).Udp({.dport = bench::kDeniedUdpPort}).Build(),
       DROP_POLICY_DENIED},
      {"IPv4 TCP with a payload, allowed",
       PacketBuilder()
           .Ethernet(eth)
           .Ipv4(v4)
           .Tcp({.sport = 40001, .dport = bench::kTcpRrPort, .flags = kTcpAck | kTcpPsh})
           .Payload({'h', 'e', 'l', 'l', 'o'})
           .Build(),
       REASON_NONE},
      {"IPv6 UDP, denied", PacketBuilder().Ethernet(eth).Ipv6(v6).Udp({.dport = bench::kDeniedUdpPort}).Build(),
       DROP_POLICY_DENIED},
      {"IPv6 TCP SYN, allowed",
       PacketBuilder().Ethernet(eth).Ipv6(v6).Tcp({.dport = bench::kTcpRrPort, .flags = kTcpSyn}).Build(),
       REASON_NONE},
      {"IPv6 UDP, spoofed source",
       PacketBuilder().Ethernet(eth).Ipv6({.src = Ipv6("fd00:214::99"), .dst = Ipv6(kServerIpv6)})
           .Udp({.dport = bench::kUdpPort})
           .Build(),
       DROP_SPOOFED_SOURCE},
  };

  const std::string config = absl::StrCat(::testing::TempDir(), "/nonlinear-", getpid(), ".trafgen");
  struct RemoveConfig {
    std::string path;
    ~RemoveConfig() { std::remove(path.c_str()); }
  } remove_config{config};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    // Linear, through BPF_PROG_TEST_RUN.
    uint8_t verdict = c.reason == REASON_NONE ? VERDICT_FORWARDED : VERDICT_DROPPED;
    uint64_t before = Count(c.reason, DIR_EGRESS, verdict);
    int expected_retval = c.reason == REASON_NONE ? TC_ACT_UNSPEC : TC_ACT_SHOT;
    EXPECT_EQ(Run(Hook::kTcIngress, c.frame), expected_retval);
    ASSERT_EQ(Count(c.reason, DIR_EGRESS, verdict), before + 1);

    // Split, live.
    {
      std::ofstream out(config);
      out << RawTrafgenConfig(c.frame);
    }
    uint64_t seen = probe.Count(0), split = probe.Count(1);
    before = Count(c.reason, DIR_EGRESS, verdict);
    auto flood = bench::TrafgenFlood(bed->client.path, "eth0", config, kCopies);
    ASSERT_TRUE(flood.ok()) << flood.status();
    // The frames are decided in softirq, mostly before trafgen returns.
    for (int wait = 0; wait < 200 && probe.Count(0) - seen < kCopies; ++wait) absl::SleepFor(absl::Milliseconds(10));
    EXPECT_EQ(probe.Count(0) - seen, kCopies);
    EXPECT_EQ(probe.Count(1) - split, kCopies) << "trafgen's frames had their IP header in the linear part";
    EXPECT_EQ(Count(c.reason, DIR_EGRESS, verdict) - before, kCopies);
  }
  for (Attachment& a : attached) EXPECT_TRUE(a.Detach().ok());
}

}  // namespace
}  // namespace stockade::testing

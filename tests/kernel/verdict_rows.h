// SPDX-License-Identifier: Apache-2.0
//
// The verdict matrix: one row a packet, for the web endpoint's maps
// (web_endpoint.h). Each row states the verdict, the reason counted, and the
// rule a drop reports. The verdict tests run every row through the programs;
// the event tests check the event each drop row makes (and that a passing
// row reports only the new flow it made, if any). A new bug becomes a new row.
#ifndef STOCKADE_TESTS_KERNEL_VERDICT_ROWS_H_
#define STOCKADE_TESTS_KERNEL_VERDICT_ROWS_H_

#include <linux/if_ether.h>

#include <ostream>
#include <string>
#include <vector>

#include "tests/kernel/web_endpoint.h"

namespace stockade::testing {

inline constexpr uint8_t kSyn = kTcpSyn;

struct VerdictRow {
  std::string description;
  Hook hook;
  std::vector<uint8_t> frame;
  bool passes;
  int reason;            // counted under this reason
  uint32_t rule_id = 0;  // reported by the drop event
};

inline std::ostream& operator<<(std::ostream& os, const VerdictRow& row) { return os << row.description; }

inline std::vector<uint8_t> Ipv6WithExtensions(std::vector<Ipv6ExtensionHeader> ext, uint16_t dport = 5432) {
  return PacketBuilder()
      .Ethernet({.src = Mac(kWebMac)})
      .Ipv6({.src = Ipv6(kWebIp6), .dst = Ipv6(kBackendIp6), .extension_headers = std::move(ext)})
      .Tcp({.dport = dport, .flags = kSyn})
      .Build();
}

// Neighbour discovery as a host sends it: hop limit 255 (RFC 4861).
inline PacketBuilder NdFromWeb(const char* dst, const char* src = kWebLinkLocal,
                               std::vector<Ipv6ExtensionHeader> ext = {}, uint8_t hop_limit = 255) {
  PacketBuilder b;
  b.Ethernet({.src = Mac(kWebMac), .dst = Mac("33:33:00:00:00:01")})
      .Ipv6({.src = Ipv6(src), .dst = Ipv6(dst), .hop_limit = hop_limit, .extension_headers = std::move(ext)});
  return b;
}

inline std::vector<uint8_t> Ipv4WithOptions(std::vector<uint8_t> options, bool to_web = false) {
  return PacketBuilder()
      .Ethernet({.src = Mac(to_web ? "02:00:00:00:00:ff" : kWebMac)})
      .Ipv4({.src = Ipv4(to_web ? kFrontendIp : kWebIp), .dst = Ipv4(to_web ? kWebIp : kBackendIp),
             .options = std::move(options)})
      .Tcp({.dport = uint16_t(to_web ? 80 : 5432), .flags = kSyn})
      .Build();
}

inline std::vector<uint8_t> Igmp(const char* mac, const char* src, const char* group, uint8_t type) {
  return PacketBuilder()
      .Ethernet({.src = Mac(mac)})
      .Ipv4({.src = Ipv4(src), .dst = Ipv4(group), .ttl = 1, .protocol = IPPROTO_IGMP})
      .Payload({type, 0, 0, 0, 0, 0, 0, 0})
      .Build();
}

inline std::vector<VerdictRow> VerdictRows() {
  const Hook out = Hook::kTcIngress;  // what web sends
  const Hook in = Hook::kTcEgress;    // what web receives
  std::vector<VerdictRow> rows = {
      // Identities, ports, protocols.
      {"allowed: web -> backend tcp/5432", out, FromWeb().Tcp({.dport = 5432, .flags = kSyn}).Build(), true,
       REASON_NONE},
      {"denied: web -> backend tcp/5433, no rule", out, FromWeb().Tcp({.dport = 5433, .flags = kSyn}).Build(), false,
       DROP_POLICY_DENIED, 0},
      {"denied: web -> frontend tcp/5432, other identity", out,
       FromWeb(kFrontendIp).Tcp({.dport = 5432, .flags = kSyn}).Build(), false, DROP_POLICY_DENIED, 0},
      {"denied: udp/5432 where only tcp is allowed", out, FromWeb().Udp({.dport = 5432}).Build(), false,
       DROP_POLICY_DENIED, 0},
      {"allowed: udp/53 to backend", out, FromWeb().Udp({.dport = 53}).Build(), true, REASON_NONE},
      {"allowed: port range 8000-8999 to anyone", out, FromWeb(kWorldIp).Tcp({.dport = 8080, .flags = kSyn}).Build(),
       true, REASON_NONE},
      {"allowed: range low edge", out, FromWeb(kWorldIp).Tcp({.dport = 8000, .flags = kSyn}).Build(), true,
       REASON_NONE},
      {"allowed: range high edge", out, FromWeb(kWorldIp).Tcp({.dport = 8999, .flags = kSyn}).Build(), true,
       REASON_NONE},
      {"denied: just past the range", out, FromWeb(kWorldIp).Tcp({.dport = 9000, .flags = kSyn}).Build(), false,
       DROP_POLICY_DENIED, 0},
      {"deny wins inside an allowed range", out, FromWeb(kWorldIp).Tcp({.dport = 8666, .flags = kSyn}).Build(),
       false, DROP_POLICY_DENIED, 5},
      {"remote-specific deny beats any-remote allow", out, FromWeb().Tcp({.dport = 6000, .flags = kSyn}).Build(),
       false, DROP_POLICY_DENIED, 9},
      {"any-remote deny beats remote-specific allow", out, FromWeb().Udp({.dport = 7000}).Build(), false,
       DROP_POLICY_DENIED, 12},
      {"allowed: any protocol to a CIDR identity", out, FromWeb("198.51.100.7").Udp({.dport = 1234}).Build(), true,
       REASON_NONE},
      {"denied: next to the CIDR", out, FromWeb("198.51.101.7").Udp({.dport = 1234}).Build(), false,
       DROP_POLICY_DENIED, 0},
      {"allowed ingress: frontend -> web tcp/80", in, ToWeb(kFrontendIp).Tcp({.dport = 80, .flags = kSyn}).Build(),
       true, REASON_NONE},
      {"denied ingress: backend -> web tcp/80", in, ToWeb(kBackendIp).Tcp({.dport = 80, .flags = kSyn}).Build(),
       false, DROP_POLICY_DENIED, 0},
      {"denied ingress: world -> web tcp/80", in, ToWeb(kWorldIp).Tcp({.dport = 80, .flags = kSyn}).Build(), false,
       DROP_POLICY_DENIED, 0},
      {"allowed ingress: echo request from anyone", in, ToWeb(kWorldIp).Icmpv4({.type = 8}).Build(), true,
       REASON_NONE},
      {"denied ingress: icmp timestamp", in, ToWeb(kWorldIp).Icmpv4({.type = 13}).Build(), false,
       DROP_POLICY_DENIED, 0},
      {"allowed: ping backend", out, FromWeb().Icmpv4({.type = 8}).Build(), true, REASON_NONE},
      {"allowed: ipv6 web -> backend tcp/5432", out, FromWeb6().Tcp({.dport = 5432, .flags = kSyn}).Build(), true,
       REASON_NONE},
      {"denied: ipv6 web -> backend tcp/1", out, FromWeb6().Tcp({.dport = 1, .flags = kSyn}).Build(), false,
       DROP_POLICY_DENIED, 0},
      {"allowed: ping6 backend", out, FromWeb6().Icmpv6({.type = 128}).Build(), true, REASON_NONE},
      {"denied: ipv6 to an unknown address is the world", out,
       FromWeb6("2001:db8::1").Tcp({.dport = 5432, .flags = kSyn}).Build(), false, DROP_POLICY_DENIED, 0},

      // Spoofing.
      {"spoofed ipv4 source", out, FromWeb(kBackendIp, "10.0.0.99").Tcp({.dport = 5432, .flags = kSyn}).Build(),
       false, DROP_SPOOFED_SOURCE},
      {"spoofed source mac", out,
       PacketBuilder()
           .Ethernet({.src = Mac("02:00:00:00:00:66")})
           .Ipv4({.src = Ipv4(kWebIp), .dst = Ipv4(kBackendIp)})
           .Tcp({.dport = 5432, .flags = kSyn})
           .Build(),
       false, DROP_SPOOFED_SOURCE},
      {"spoofed ipv6 source", out, FromWeb6(kBackendIp6, "fd00::99").Tcp({.dport = 5432, .flags = kSyn}).Build(),
       false, DROP_SPOOFED_SOURCE},
      {"ipv6 from web's link-local address is its own", out,
       FromWeb6(kBackendIp6, kWebLinkLocal).Tcp({.dport = 5432, .flags = kSyn}).Build(), true, REASON_NONE},
      {"ingress traffic is not held to web's source", in,
       ToWeb(kFrontendIp).Tcp({.dport = 80, .flags = kSyn}).Build(), true, REASON_NONE},

      // ARP and neighbour discovery.
      {"arp with web's own sender", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Arp({.sender_mac = Mac(kWebMac), .sender_ip = Ipv4(kWebIp), .target_ip = Ipv4(kBackendIp)})
           .Build(),
       true, REASON_NONE},
      {"arp claiming another ip", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Arp({.sender_mac = Mac(kWebMac), .sender_ip = Ipv4(kBackendIp), .target_ip = Ipv4(kFrontendIp)})
           .Build(),
       false, DROP_SPOOFED_SOURCE},
      {"arp claiming another mac", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Arp({.sender_mac = Mac("02:00:00:00:00:66"), .sender_ip = Ipv4(kWebIp)})
           .Build(),
       false, DROP_SPOOFED_SOURCE},
      {"arp probe (sender 0.0.0.0)", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Arp({.sender_mac = Mac(kWebMac), .sender_ip = Ipv4("0.0.0.0"), .target_ip = Ipv4(kWebIp)})
           .Build(),
       true, REASON_NONE},
      {"arp to web from anyone", in,
       PacketBuilder().Ethernet().Arp({.sender_ip = Ipv4(kBackendIp), .target_ip = Ipv4(kWebIp)}).Build(), true,
       REASON_NONE},
      {"neighbour solicitation from web's link-local", out,
       NdFromWeb("ff02::1:ff00:3").NeighborSolicitation({.target = Ipv6(kBackendIp6)}).Build(), true,
       REASON_NONE},
      {"neighbour solicitation for DAD from ::", out,
       NdFromWeb("ff02::1:ff00:2", "::").NeighborSolicitation({.target = Ipv6(kWebIp6)}).Build(), true, REASON_NONE},
      {"neighbour advertisement for web's own address", out,
       NdFromWeb(kBackendIp6).NeighborAdvertisement({.target = Ipv6(kWebIp6)}).Build(), true,
       REASON_NONE},
      {"neighbour advertisement for another's address", out,
       NdFromWeb(kBackendIp6).NeighborAdvertisement({.target = Ipv6(kBackendIp6)}).Build(), false,
       DROP_SPOOFED_SOURCE},
      {"router advertisement from a container", out,
       NdFromWeb("ff02::1").RouterAdvertisement({}).Build(), false, DROP_ND_ROUTER_MSG},
      // Neighbour discovery's options and validity (RFC 4861, 6980, 7113).
      {"neighbour solicitation naming web's own mac", out,
       NdFromWeb("ff02::1:ff00:3").NeighborSolicitation({.target = Ipv6(kBackendIp6), .source_link_layer = Mac(kWebMac)}).Build(),
       true, REASON_NONE},
      {"neighbour solicitation naming another mac", out,
       NdFromWeb("ff02::1:ff00:3", kWebIp6)
           .NeighborSolicitation({.target = Ipv6(kBackendIp6), .source_link_layer = Mac("02:00:00:00:00:66")})
           .Build(),
       false, DROP_ND_OPTION},
      {"neighbour solicitation naming its own mac, then another", out,
       NdFromWeb("ff02::1:ff00:3")
           .NeighborSolicitation({.target = Ipv6(kBackendIp6), .source_link_layer = Mac(kWebMac),
                                  .options = LinkLayerOption(1, Mac("02:00:00:00:00:66"))})
           .Build(),
       false, DROP_ND_OPTION},
      {"neighbour advertisement naming another mac", out,
       NdFromWeb(kBackendIp6).NeighborAdvertisement({.target = Ipv6(kWebIp6), .target_link_layer = Mac("02:00:00:00:00:66")}).Build(),
       false, DROP_ND_OPTION},
      {"neighbour advertisement naming web's own mac", out,
       NdFromWeb(kBackendIp6).NeighborAdvertisement({.target = Ipv6(kWebIp6), .target_link_layer = Mac(kWebMac)}).Build(),
       true, REASON_NONE},
      {"router solicitation naming web's own mac", out,
       NdFromWeb("ff02::2").RouterSolicitation({.source_link_layer = Mac(kWebMac)}).Build(), true, REASON_NONE},
      {"router solicitation naming another mac", out,
       NdFromWeb("ff02::2").RouterSolicitation({.source_link_layer = Mac("02:00:00:00:00:66")}).Build(), false, DROP_ND_OPTION},
      {"neighbour solicitation with an option of length 0", out,
       NdFromWeb("ff02::1:ff00:3").NeighborSolicitation({.target = Ipv6(kBackendIp6), .options = {14, 0, 0, 0, 0, 0, 0, 0}}).Build(),
       false, DROP_ND_OPTION},
      {"neighbour solicitation with an option past the message", out,
       NdFromWeb("ff02::1:ff00:3").NeighborSolicitation({.target = Ipv6(kBackendIp6), .options = {14, 2, 0, 0, 0, 0, 0, 0}}).Build(),
       false, DROP_ND_OPTION},
      {"neighbour solicitation with a link-layer option of 16 bytes", out,
       NdFromWeb("ff02::1:ff00:3")
           .NeighborSolicitation({.target = Ipv6(kBackendIp6), .options = {1, 2, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0}})
           .Build(),
       false, DROP_ND_OPTION},
      {"duplicate address detection with a source link-layer address", out,
       NdFromWeb("ff02::1:ff00:2", "::").NeighborSolicitation({.target = Ipv6(kWebIp6), .source_link_layer = Mac(kWebMac)}).Build(),
       false, DROP_ND_OPTION},
      {"neighbour solicitation with hop limit 64", out,
       NdFromWeb("ff02::1:ff00:3", kWebLinkLocal, {}, 64).NeighborSolicitation({.target = Ipv6(kBackendIp6)}).Build(),
       false, DROP_ND_INVALID},
      {"neighbour solicitation with code 1", out,
       NdFromWeb("ff02::1:ff00:3").NeighborSolicitation({.target = Ipv6(kBackendIp6), .code = 1}).Build(), false,
       DROP_ND_INVALID},
      {"neighbour solicitation shorter than its target", out,
       NdFromWeb("ff02::1:ff00:3").Icmpv6({.type = 135, .body = std::vector<uint8_t>(8, 0)}).Build(), false,
       DROP_ND_INVALID},
      {"neighbour solicitation in an atomic fragment", out,
       NdFromWeb("ff02::1:ff00:3", kWebLinkLocal, {Ipv6Fragment{}}).NeighborSolicitation({.target = Ipv6(kBackendIp6)}).Build(),
       false, DROP_ND_INVALID},
      {"router advertisement behind hop-by-hop and destination options", out,
       NdFromWeb("ff02::1", kWebLinkLocal, {Ipv6HopByHop{}, Ipv6DestinationOptions{}}).RouterAdvertisement({}).Build(),
       false, DROP_ND_ROUTER_MSG},
      {"router advertisement in an atomic fragment", out,
       NdFromWeb("ff02::1", kWebLinkLocal, {Ipv6DestinationOptions{}, Ipv6Fragment{}}).RouterAdvertisement({}).Build(),
       false, DROP_ND_INVALID},
      {"router advertisement in a first fragment", out,
       NdFromWeb("ff02::1", kWebLinkLocal, {Ipv6Fragment{.more_fragments = true}}).RouterAdvertisement({}).Build(),
       false, DROP_ND_INVALID},
      {"neighbour solicitation to web naming the gateway's mac", in,
       PacketBuilder()
           .Ethernet({.src = Mac("02:00:00:00:00:ff"), .dst = Mac(kWebMac)})
           .Ipv6({.src = Ipv6("fe80::1"), .dst = Ipv6(kWebIp6), .hop_limit = 255})
           .NeighborSolicitation({.target = Ipv6(kWebIp6), .source_link_layer = Mac("02:00:00:00:00:ff")})
           .Build(),
       true, REASON_NONE},
      {"neighbour advertisement to web with hop limit 64", in,
       PacketBuilder()
           .Ethernet({.src = Mac("02:00:00:00:00:ff"), .dst = Mac(kWebMac)})
           .Ipv6({.src = Ipv6("fe80::1"), .dst = Ipv6(kWebIp6), .hop_limit = 64})
           .NeighborAdvertisement({.target = Ipv6("fe80::1")})
           .Build(),
       false, DROP_ND_INVALID},
      {"ndp with a spoofed source", out,
       NdFromWeb("ff02::1:ff00:3", "fe80::66").NeighborSolicitation({.target = Ipv6(kBackendIp6)}).Build(), false,
       DROP_SPOOFED_SOURCE},

      {"igmp membership report from web's own address", out, Igmp(kWebMac, kWebIp, "224.0.0.22", 0x22), true,
       REASON_NONE},
      {"igmp from a spoofed source", out, Igmp(kWebMac, "10.0.0.66", "224.0.0.22", 0x22), false,
       DROP_SPOOFED_SOURCE},
      {"igmp query to web", in, Igmp("02:00:00:00:00:01", "10.0.0.1", "224.0.0.1", 0x11), true, REASON_NONE},
      // Found by the differential test: these passed as link housekeeping, past policy.
      {"igmp to a unicast peer is a flow", out, Igmp(kWebMac, kWebIp, kBackendIp, 0x22), false, DROP_POLICY_DENIED,
       0},
      {"ipv6 next header 2 is no igmp", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Ipv6({.src = Ipv6(kWebIp6), .dst = Ipv6(kBackendIp6), .next_header = IPPROTO_IGMP})
           .Payload({0x22, 0, 0, 0, 0, 0, 0, 0})
           .Build(),
       false, DROP_POLICY_DENIED, 0},
      {"icmpv6 neighbour solicitation inside ipv4 is no neighbour discovery", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Ipv4({.src = Ipv4(kWebIp), .dst = Ipv4(kBackendIp), .protocol = IPPROTO_ICMPV6})
           .Payload(std::vector<uint8_t>{135, 0, 0, 0, 0, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3})
           .Build(),
       false, DROP_POLICY_DENIED, 0},

      // VLANs and tunnels sent by a container.
      {"vlan-tagged frame", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Vlan({.vid = 10})
           .Ipv4({.src = Ipv4(kWebIp), .dst = Ipv4(kBackendIp)})
           .Tcp({.dport = 5432, .flags = kSyn})
           .Build(),
       false, DROP_VLAN_TAGGED},
      {"q-in-q frame", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Vlan({.tpid = ETH_P_8021AD, .vid = 10})
           .Vlan({.vid = 20})
           .Ipv4({.src = Ipv4(kWebIp), .dst = Ipv4(kBackendIp)})
           .Udp()
           .Build(),
       false, DROP_VLAN_TAGGED},
      {"gre to backend without an explicit rule", out,
       FromWeb().Gre().Ipv4({.src = Ipv4("192.0.2.1"), .dst = Ipv4("192.0.2.2")}).Udp().Build(), false,
       DROP_TUNNEL_DENIED},
      {"ip-in-ip to backend under an explicit rule", out,
       FromWeb().Ipv4({.src = Ipv4("192.0.2.1"), .dst = Ipv4("192.0.2.2")}).Udp().Build(), true, REASON_NONE},
      {"ipv6-in-ipv4 to backend", out,
       FromWeb().Ipv6({.src = Ipv6("2001:db8::1"), .dst = Ipv6("2001:db8::2")}).Udp().Build(), false,
       DROP_TUNNEL_DENIED},
      {"vxlan to a range any-protocol rule does not open", out,
       FromWeb("198.51.100.7")
           .Vxlan()
           .Ethernet()
           .Ipv4({.src = Ipv4("192.0.2.1"), .dst = Ipv4("192.0.2.2")})
           .Udp()
           .Build(),
       false, DROP_TUNNEL_DENIED, 7},

      // Malformed and unusual headers.
      {"ipv4 with options", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Ipv4({.src = Ipv4(kWebIp), .dst = Ipv4(kBackendIp), .options = {0x94, 0x04, 0, 0}})
           .Tcp({.dport = 5432, .flags = kSyn})
           .Build(),
       true, REASON_NONE},
      // IPv4 options (RFC 7126; docs/security.md).
      {"ipv4 nops and router alert", out, Ipv4WithOptions({1, 1, 0x94, 4, 0, 0}), true, REASON_NONE},
      {"ipv4 security label", out, Ipv4WithOptions({130, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0}), true, REASON_NONE},
      {"ipv4 loose source route", out, Ipv4WithOptions({131, 7, 4, 10, 0, 0, 3}), false, DROP_SOURCE_ROUTE},
      {"ipv4 strict source route", out, Ipv4WithOptions({137, 7, 4, 10, 0, 0, 3}), false, DROP_SOURCE_ROUTE},
      {"ipv4 source route to web", in, Ipv4WithOptions({1, 131, 7, 4, 10, 0, 0, 3}, true), false,
       DROP_SOURCE_ROUTE},
      {"ipv4 record route", out, Ipv4WithOptions({7, 7, 4, 0, 0, 0, 0}), false, DROP_IPV4_OPTION},
      {"ipv4 timestamp", out, Ipv4WithOptions({68, 4, 5, 0}), false, DROP_IPV4_OPTION},
      {"ipv4 stream id (obsolete)", out, Ipv4WithOptions({136, 4, 0, 1}), false, DROP_IPV4_OPTION},
      {"ipv4 unknown option", out, Ipv4WithOptions({30, 4, 0, 0}), false, DROP_IPV4_OPTION},
      {"ipv4 option of length 0", out, Ipv4WithOptions({0x94, 0, 0, 0}), false, DROP_IPV4_OPTION},
      {"ipv4 option of length 1", out, Ipv4WithOptions({7, 1, 0, 0}), false, DROP_IPV4_OPTION},
      {"ipv4 option past the header", out, Ipv4WithOptions({0x94, 8, 0, 0}), false, DROP_IPV4_OPTION},
      {"ipv4 option cut at its length byte", out, Ipv4WithOptions({1, 1, 1, 0x94}), false, DROP_IPV4_OPTION},
      {"ipv4 router alert of the wrong length", out, Ipv4WithOptions({0x94, 6, 0, 0, 0, 0}), false,
       DROP_IPV4_OPTION},
      {"ipv4 source route hidden after the end of the list", out, Ipv4WithOptions({0, 131, 3, 4}), false,
       DROP_IPV4_OPTION},
      {"ipv4 end of list and zero padding", out, Ipv4WithOptions({1, 0, 0, 0}), true, REASON_NONE},
      {"ipv4 ihl below 5", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Ipv4({.src = Ipv4(kWebIp), .dst = Ipv4(kBackendIp), .ihl = 4})
           .Tcp({.dport = 5432, .flags = kSyn})
           .Build(),
       false, DROP_INVALID_PACKET},
      {"ipv4 total length beyond the frame", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Ipv4({.src = Ipv4(kWebIp), .dst = Ipv4(kBackendIp), .total_length = 1400})
           .Tcp({.dport = 5432, .flags = kSyn})
           .Build(),
       false, DROP_INVALID_PACKET},
      {"ipv4 total length shorter than its header", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Ipv4({.src = Ipv4(kWebIp), .dst = Ipv4(kBackendIp), .total_length = 12})
           .Tcp({.dport = 5432, .flags = kSyn})
           .Build(),
       false, DROP_INVALID_PACKET},
      {"truncated tcp header", out, FromWeb().Tcp({.dport = 5432, .flags = kSyn}).Truncate(14 + 20 + 10).Build(),
       false, DROP_INVALID_PACKET},
      {"tcp data offset below 5", out, FromWeb().Tcp({.dport = 5432, .flags = kSyn, .data_offset = 4}).Build(),
       false, DROP_INVALID_PACKET},
      // BPF_PROG_TEST_RUN itself refuses IP frames shorter than an IP header.
      {"arp cut short", out,
       PacketBuilder().Ethernet({.src = Mac(kWebMac), .ethertype = ETH_P_ARP}).Payload({0, 1, 8, 0, 6, 4}).Build(),
       false, DROP_INVALID_PACKET},
      {"unsupported ethertype (LLDP)", out,
       PacketBuilder().Ethernet({.src = Mac(kWebMac), .ethertype = 0x88cc}).Payload(std::vector<uint8_t>(46)).Build(),
       false, DROP_UNSUPPORTED_L3},
      {"ipv6 payload length beyond the frame", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Ipv6({.src = Ipv6(kWebIp6), .dst = Ipv6(kBackendIp6), .payload_length = 1400})
           .Tcp({.dport = 5432, .flags = kSyn})
           .Build(),
       false, DROP_INVALID_PACKET},
      {"ipv6 hop-by-hop, destination options, AH before tcp", out,
       Ipv6WithExtensions({Ipv6HopByHop{}, Ipv6DestinationOptions{}, Ipv6Authentication{}}), true, REASON_NONE},
      {"ipv6 routing header type 2", out, Ipv6WithExtensions({Ipv6Routing{.routing_type = 2}}), true, REASON_NONE},
      {"ipv6 routing header type 0", out, Ipv6WithExtensions({Ipv6Routing{.routing_type = 0}}), false,
       DROP_IPV6_ROUTING_TYPE0},
      // IPv6 extension header order and repetition (RFC 8200 4.1).
      {"ipv6 longest chain the order allows", out,
       Ipv6WithExtensions({Ipv6HopByHop{}, Ipv6DestinationOptions{}, Ipv6Routing{.routing_type = 2}, Ipv6Fragment{},
                           Ipv6Authentication{}, Ipv6DestinationOptions{}}),
       true, REASON_NONE},
      {"ipv6 hop-by-hop after destination options", out,
       Ipv6WithExtensions({Ipv6DestinationOptions{}, Ipv6HopByHop{}}), false, DROP_IPV6_EXT_ORDER},
      {"ipv6 hop-by-hop twice", out, Ipv6WithExtensions({Ipv6HopByHop{}, Ipv6HopByHop{}}), false,
       DROP_IPV6_EXT_ORDER},
      {"ipv6 destination options twice without routing between", out,
       Ipv6WithExtensions({Ipv6DestinationOptions{}, Ipv6DestinationOptions{}}), false, DROP_IPV6_EXT_ORDER},
      {"ipv6 destination options three times", out,
       Ipv6WithExtensions({Ipv6DestinationOptions{}, Ipv6Routing{.routing_type = 2}, Ipv6DestinationOptions{},
                           Ipv6DestinationOptions{}}),
       false, DROP_IPV6_EXT_ORDER},
      {"ipv6 routing twice", out,
       Ipv6WithExtensions({Ipv6Routing{.routing_type = 2}, Ipv6Routing{.routing_type = 2}}), false,
       DROP_IPV6_EXT_ORDER},
      {"ipv6 fragment header twice", out, Ipv6WithExtensions({Ipv6Fragment{}, Ipv6Fragment{}}), false,
       DROP_IPV6_EXT_ORDER},
      {"ipv6 AH twice", out, Ipv6WithExtensions({Ipv6Authentication{}, Ipv6Authentication{}}), false,
       DROP_IPV6_EXT_ORDER},
      {"ipv6 chain of 8 destination options", out,
       Ipv6WithExtensions(std::vector<Ipv6ExtensionHeader>(8, Ipv6DestinationOptions{})), false, DROP_IPV6_EXT_ORDER},
      {"ipv6 routing type 2 with a segment left", out,
       Ipv6WithExtensions({Ipv6Routing{.routing_type = 2, .segments_left = 1, .addresses = {Ipv6("fd00::4")}}}),
       false, DROP_SOURCE_ROUTE},
      {"ipv6 segment routing header with segments left", out,
       Ipv6WithExtensions({Ipv6Routing{.routing_type = 4, .segments_left = 1, .addresses = {Ipv6("fd00::4")}}}),
       false, DROP_SOURCE_ROUTE},
      {"ipv6 segment routing header, no segment left", out,
       Ipv6WithExtensions({Ipv6Routing{.routing_type = 4, .segments_left = 0}}), true, REASON_NONE},
      {"ipv6 mobility header is unknown", out, Ipv6WithExtensions({Ipv6RawExtension{.type = 135}}), false,
       DROP_IPV6_EXT_UNKNOWN},
      {"ipv6 extension header cut short", out,
       PacketBuilder()
           .Ethernet({.src = Mac(kWebMac)})
           .Ipv6({.src = Ipv6(kWebIp6), .dst = Ipv6(kBackendIp6), .payload_length = 4, .next_header = 60})
           .Payload({6, 0, 0, 0})
           .Build(),
       false, DROP_INVALID_PACKET},
      {"tiny first fragment: tcp header cut", out,
       FromWeb().Tcp({.dport = 5432, .flags = kSyn}).Truncate(14 + 20 + 8).Build(), false, DROP_INVALID_PACKET},
  };
  // A first fragment carrying only 8 bytes of TCP: the tiny-fragment attack.
  {
    auto fragments = FromWeb().Tcp({.dport = 5432, .flags = kSyn}).Payload(std::vector<uint8_t>(32)).BuildFragments(8);
    rows.push_back({"tiny first fragment (8 bytes of tcp)", out, fragments.front(), false, DROP_FRAG_TOO_SMALL});
    rows.push_back({"fragment at offset 8 rewriting tcp flags", out, fragments[1], false, DROP_FRAG_TOO_SMALL});
  }
  return rows;
}

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_KERNEL_VERDICT_ROWS_H_

// SPDX-License-Identifier: Apache-2.0
//
// The differential test: seeded sequences of generated and mutated frames go
// through the real programs (BPF_PROG_TEST_RUN, TC and XDP) and through the
// reference model (tests/model/verdict_model.h); verdict, drop reason, rule
// and direction must agree on every frame. Sequences keep their state
// between frames, so conntrack (new flow, reply, established, closed,
// revoked by a revision bump) and fragments are exercised, not just parsing.
//
// The scene is the web endpoint of the verdict matrix (web_endpoint.h), with
// its flags, role, rules and revision varied per sequence.
//
//   STOCKADE_DIFF_PACKETS=N   frames to run (default 12000, a few seconds)
//   STOCKADE_DIFF_SEED=S      the seed (default fixed, so CI is repeatable);
//                             "random": a new one, printed
// A mismatch prints the seed, the sequence, the frame in hex and both answers.
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>

#include <linux/bpf.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "stockade/net/addresses.h"
#include "stockade/datapath/event_reader.h"
#include "tests/kernel/web_endpoint.h"
#include "tests/model/verdict_model.h"

namespace stockade::testing {
namespace {

using model::HookPoint;
using model::MapState;
using model::ToString;
using model::Verdict;
using model::VerdictModel;

constexpr char kRouterMac[] = "02:00:00:00:00:ff";
constexpr char kOtherMac[] = "02:00:00:00:00:66";
constexpr uint64_t kDefaultSeed = 20261126;
constexpr size_t kDefaultPackets = 12000;

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  if (std::string(text) == "random") return std::random_device{}() ^ uint64_t(std::random_device{}()) << 32;
  return std::strtoull(text, nullptr, 0);
}

// One frame to run, and which side of web sends it.
struct Frame {
  std::vector<uint8_t> bytes;
  bool from_web = false;
  std::string what;
};

struct Peer {
  const char* name;
  const char* ip4;
  const char* ip6;
};

const Peer kPeers[] = {
    {"backend", kBackendIp, kBackendIp6}, {"frontend", kFrontendIp, "fd00::4"},
    {"partner", "198.51.100.7", "2001:db8:1::7"}, {"world", kWorldIp, "2001:db8::9"},
    {"web itself", kWebIp, kWebIp6},
};

enum class FlowProto { kTcp, kUdp, kEcho, kSctp, kIpip, kGre, kSixInFour, kVxlan, kOther };

// A conversation between web and one peer; the client sends first.
struct FlowSpec {
  bool v6 = false;
  bool web_is_client = true;
  Peer peer = kPeers[0];
  FlowProto proto = FlowProto::kTcp;
  uint8_t other_protocol = 0;  // kOther's IP protocol number
  uint16_t client_port = 40000, server_port = 5432;
  uint16_t echo_id = 1;
};

class FrameGenerator {
 public:
  explicit FrameGenerator(uint64_t seed) : rng_(seed) {}

  size_t Below(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  uint8_t Byte() { return uint8_t(Below(256)); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) { return v[Below(v.size())]; }

  FlowSpec NewFlow() {
    FlowSpec f;
    f.v6 = Chance(0.25);
    f.web_is_client = Chance(0.65);
    f.peer = kPeers[Below(10) < 9 ? Below(4) : 4];
    size_t p = Below(100);
    f.proto = p < 35   ? FlowProto::kTcp
              : p < 60 ? FlowProto::kUdp
              : p < 72 ? FlowProto::kEcho
              : p < 76 ? FlowProto::kSctp
              : p < 79 ? FlowProto::kIpip
              : p < 82 ? FlowProto::kGre
              : p < 85 ? FlowProto::kSixInFour
              : p < 89 ? FlowProto::kVxlan
                       : FlowProto::kOther;
    // Protocols that mean something else in the other family (IGMP, ICMPv6
    // in IPv4, ICMP in IPv6), "no next header", and anything at all.
    f.other_protocol = Pick<uint8_t>({2, 2, 58, 1, 59, 4, 41, 47, 132, Byte()});
    static const std::vector<uint16_t> kServerPorts = {5432, 5432, 53, 80, 8000, 8080, 8666, 8999, 9000,
                                                       6000, 7000, 1234, 4789, 8472, 6081, 22};
    f.server_port = Chance(0.9) ? Pick(kServerPorts) : uint16_t(Below(65536));
    f.client_port = Chance(0.85) ? uint16_t(32768 + Below(28000)) : Pick(kServerPorts);
    f.echo_id = Chance(0.1) ? 0 : uint16_t(Below(65536));
    return f;
  }

  // Web's side of the flow, and the peer's.
  static Ipv4Address Addr4(const FlowSpec& f, bool web) { return Ipv4(web ? kWebIp : f.peer.ip4); }
  static Ipv6Address Addr6(const FlowSpec& f, bool web) { return Ipv6(web ? kWebIp6 : f.peer.ip6); }

  // Ethernet and IP of a frame from web (or to it), with the addresses of the flow.
  static PacketBuilder Base(bool from_web) {
    PacketBuilder b;
    b.Ethernet({.src = Mac(from_web ? kWebMac : kRouterMac), .dst = Mac(from_web ? kRouterMac : kWebMac)});
    return b;
  }
  static void AddIp(PacketBuilder& b, const FlowSpec& f, bool from_web, Ipv4Options v4 = {}, Ipv6Options v6 = {}) {
    // The builder derives the protocol from the next layer; these have none of its own.
    std::optional<uint8_t> protocol = f.proto == FlowProto::kSctp    ? std::optional<uint8_t>(132)
                                      : f.proto == FlowProto::kOther ? std::optional<uint8_t>(f.other_protocol)
                                                                     : std::nullopt;
    if (!v4.protocol) v4.protocol = protocol;
    if (!v6.next_header) v6.next_header = protocol;
    if (f.v6) {
      v6.src = Addr6(f, from_web);
      v6.dst = Addr6(f, !from_web);
      b.Ipv6(v6);
    } else {
      v4.src = Addr4(f, from_web);
      v4.dst = Addr4(f, !from_web);
      b.Ipv4(v4);
    }
  }

  // The L4 part of a packet of the flow.
  void AddTransport(PacketBuilder& b, const FlowSpec& f, bool from_client, uint8_t tcp_flags, size_t payload) {
    uint16_t sport = from_client ? f.client_port : f.server_port;
    uint16_t dport = from_client ? f.server_port : f.client_port;
    std::vector<uint8_t> data(payload, 0x5a);
    switch (f.proto) {
      case FlowProto::kTcp:
        b.Tcp({.sport = sport, .dport = dport, .flags = tcp_flags});
        break;
      case FlowProto::kUdp:
        b.Udp({.sport = sport, .dport = dport});
        break;
      case FlowProto::kEcho: {
        auto echo = IcmpEcho(f.echo_id, uint16_t(Below(100)));
        if (f.v6)
          b.Icmpv6({.type = uint8_t(from_client ? 128 : 129), .rest_of_header = echo});
        else
          b.Icmpv4({.type = uint8_t(from_client ? 8 : 0), .rest_of_header = echo});
        break;
      }
      case FlowProto::kSctp:
        data.insert(data.begin(), {uint8_t(sport >> 8), uint8_t(sport), uint8_t(dport >> 8), uint8_t(dport), 0, 0, 0,
                                   1, 0, 0, 0, 0});
        break;
      case FlowProto::kIpip:
        b.Ipv4({.src = Ipv4("192.0.2.1"), .dst = Ipv4("192.0.2.2")}).Udp();
        break;
      case FlowProto::kGre:
        b.Gre({.key = Chance(0.5) ? std::optional<uint32_t>(7) : std::nullopt})
            .Ipv4({.src = Ipv4("192.0.2.1"), .dst = Ipv4("192.0.2.2")})
            .Udp();
        break;
      case FlowProto::kSixInFour:
        b.Ipv6({.src = Ipv6("2001:db8::1"), .dst = Ipv6("2001:db8::2")}).Udp();
        break;
      case FlowProto::kVxlan:
        b.Vxlan({.udp_sport = sport, .udp_dport = Pick<uint16_t>({4789, 8472, 6081})})
            .Ethernet()
            .Ipv4({.src = Ipv4("192.0.2.1"), .dst = Ipv4("192.0.2.2")})
            .Udp();
        break;
      case FlowProto::kOther:
        break;
    }
    if (!data.empty()) b.Payload(data);
  }

  // A packet of the flow from the client or the server.
  PacketBuilder FlowPacket(const FlowSpec& f, bool from_client, uint8_t tcp_flags, size_t payload = 0,
                           Ipv4Options v4 = {}, Ipv6Options v6 = {}) {
    bool from_web = from_client == f.web_is_client;
    PacketBuilder b = Base(from_web);
    if (f.proto == FlowProto::kOther) payload = std::max<size_t>(payload, 8 + Below(24));
    AddIp(b, f, from_web, v4, v6);
    AddTransport(b, f, from_client, tcp_flags, payload);
    return b;
  }

  Frame Make(const FlowSpec& f, bool from_client, PacketBuilder b, std::string what) {
    return {b.Build(), from_client == f.web_is_client, std::move(what)};
  }

  // A list of options, each well formed or nearly: the kinds that pass,
  // those refused, lengths a little off, and bytes after the end of the list.
  std::vector<uint8_t> RandomIpv4Options() {
    std::vector<uint8_t> options;
    size_t n = 1 + Below(4);
    for (size_t i = 0; i < n && options.size() < 36; ++i) {
      uint8_t type = Pick<uint8_t>({0, 1, 7, 68, 130, 131, 133, 134, 136, 137, 148, 148, 30, Byte()});
      if (type <= 1) {
        options.push_back(type);
        continue;
      }
      uint8_t length = type == 148 ? 4 : uint8_t(3 + Below(6));
      if (Chance(0.15)) length = uint8_t(Below(3) + (Chance(0.5) ? 0 : 8));
      options.push_back(type);
      options.push_back(length);
      for (size_t b = 2; b < length && options.size() < 40; ++b) options.push_back(Chance(0.8) ? 0 : Byte());
    }
    if (options.size() > 40) options.resize(40);
    return options;
  }

  std::vector<Ipv6ExtensionHeader> RandomExtensionChain() {
    std::vector<Ipv6ExtensionHeader> chain;
    size_t n = Below(11);
    for (size_t i = 0; i < n; ++i) {
      switch (Below(8)) {
        case 0: chain.push_back(Ipv6HopByHop{}); break;
        case 1: chain.push_back(Ipv6DestinationOptions{.options = std::vector<uint8_t>(Below(3) * 8 + 6, 0)}); break;
        case 2: chain.push_back(Ipv6Routing{.routing_type = Pick<uint8_t>({0, 2, 3, 4}), .segments_left = uint8_t(Below(2))}); break;
        case 3: chain.push_back(Ipv6Fragment{.identification = uint32_t(Below(1000))}); break;
        case 4: chain.push_back(Ipv6Authentication{}); break;
        case 5: chain.push_back(Ipv6RawExtension{.type = Pick<uint8_t>({135, 139, 140, 253, 254})}); break;
        default: chain.push_back(Ipv6DestinationOptions{}); break;
      }
    }
    return chain;
  }

  // Opening, follow-ups, replies and endings of the flow.
  Frame Conversation(const FlowSpec& f, bool opening) {
    bool from_client = opening || Chance(0.5);
    uint8_t flags = opening ? kTcpSyn : Pick<uint8_t>({kTcpAck, kTcpAck | kTcpPsh, kTcpSyn | kTcpAck, kTcpFin | kTcpAck,
                                                       kTcpRst, kTcpSyn, 0});
    return Make(f, from_client, FlowPacket(f, from_client, flags, Below(3) * 16),
                absl::StrCat(opening ? "opening" : from_client ? "client" : "server", " flags ", int(flags)));
  }

  std::vector<Frame> Fragments(const FlowSpec& f) {
    bool from_client = Chance(0.7);
    Ipv6Options v6;
    // Extension headers in the fragmentable part: the first fragment's
    // upper layer lies behind them, the later fragments do not repeat them.
    if (f.v6 && Chance(0.4)) v6.extension_headers = {Ipv6DestinationOptions{}};
    if (f.v6 && Chance(0.2)) v6.extension_headers.insert(v6.extension_headers.begin(), Ipv6HopByHop{});
    PacketBuilder b = FlowPacket(f, from_client, kTcpSyn, 24 + Below(200), {.id = uint16_t(Below(65536))}, v6);
    size_t size = Pick<size_t>({8, 16, 24, 32, 48, 64, 128});
    std::vector<std::vector<uint8_t>> parts = b.BuildFragments(size, uint32_t(Below(1 << 20)));
    bool from_web = from_client == f.web_is_client;
    std::vector<Frame> out;
    switch (Below(5)) {
      case 0:  // later fragments only: their first never came
        parts.erase(parts.begin());
        break;
      case 1:  // the first, then the rest in reverse
        std::reverse(parts.begin() + 1, parts.end());
        break;
      case 2:  // a later fragment sent twice (an overlap), the first resent after it
        if (parts.size() > 1) parts.push_back(parts[1]);
        parts.push_back(parts[0]);
        break;
      default:
        break;
    }
    for (size_t i = 0; i < parts.size(); ++i)
      out.push_back({parts[i], from_web, absl::StrCat("fragment ", i, " of ", parts.size(), " size ", size)});
    return out;
  }

  // An ICMP error about a packet of the flow, true or forged.
  Frame IcmpError(const FlowSpec& f) {
    bool error_from_web = Chance(0.4);
    // The quoted packet went the other way: the error goes back to its sender.
    bool quoted_from_web = !error_from_web;
    FlowSpec quoted_flow = f;
    std::string what = "icmp error";
    size_t forge = Below(6);
    if (forge == 0) {
      quoted_flow.peer = kPeers[Below(4)];
      what += ", inner from another peer";
    } else if (forge == 1) {
      quoted_flow.client_port = uint16_t(Below(65536));
      what += ", inner matching no flow";
    } else if (forge == 2) {
      quoted_from_web = !quoted_from_web;  // inner source is not the error's destination
      what += ", inner source not the error's destination";
    }
    bool quoted_from_client = quoted_from_web == f.web_is_client;
    PacketBuilder quoted;
    AddIp(quoted, quoted_flow, quoted_from_web);
    AddTransport(quoted, quoted_flow, quoted_from_client, kTcpSyn, 0);
    size_t max_quoted = Chance(0.7) ? PacketBuilder::kWholePacket : Pick<size_t>({8, 20, 24, 28, 40, 44, 48});
    PacketBuilder b = Base(error_from_web);
    AddIp(b, f, error_from_web);
    uint8_t code = uint8_t(Below(5));
    if (f.v6) {
      uint8_t type = Chance(0.9) ? uint8_t(1 + Below(4)) : Byte();
      b.Icmpv6Error({.type = type, .code = code}, quoted, max_quoted);
    } else {
      uint8_t type = Chance(0.9) ? Pick<uint8_t>({3, 4, 11, 12}) : Byte();
      b.Icmpv4Error({.type = type, .code = code}, quoted, max_quoted);
    }
    std::vector<uint8_t> frame = b.Build();
    if (Chance(0.1)) {
      // The quote after the datagram's end, as Ethernet padding: no part of the error.
      PacketBuilder bare = Base(error_from_web);
      AddIp(bare, f, error_from_web);
      if (f.v6)
        bare.Icmpv6Error({.type = 1, .code = code}, quoted, 0);
      else
        bare.Icmpv4Error({.type = 3, .code = code}, quoted, 0);
      frame = bare.Build();
      std::vector<uint8_t> quote = quoted.Build();
      frame.insert(frame.end(), quote.begin(), quote.end());
      what += ", quote in the padding";
    }
    return {frame, error_from_web, absl::StrCat(what, ", quote cut at ", max_quoted)};
  }

  // ARP, neighbour discovery, MLD and IGMP, honest and not.
  Frame LinkHousekeeping() {
    bool from_web = Chance(0.75);
    PacketBuilder b;
    b.Ethernet({.src = Mac(from_web ? (Chance(0.9) ? kWebMac : kOtherMac) : kRouterMac)});
    const char* own4 = Chance(0.8) ? kWebIp : Pick<const char*>({"0.0.0.0", kBackendIp});
    const char* own6 = Pick<const char*>({kWebLinkLocal, kWebLinkLocal, kWebIp6, "::", "fe80::66"});
    switch (Below(6)) {
      case 0:
        b.Arp({.op = uint16_t(1 + Below(2)), .sender_mac = Mac(Chance(0.9) ? kWebMac : kOtherMac),
               .sender_ip = Ipv4(from_web ? own4 : kBackendIp), .target_ip = Ipv4(from_web ? kBackendIp : kWebIp)});
        return {b.Build(), from_web, "arp"};
      case 1: {
        uint8_t type = Pick<uint8_t>({133, 134, 135, 137, 130, 131, 132, 143});
        b.Ipv6({.src = Ipv6(from_web ? own6 : "fe80::1"), .dst = Ipv6("ff02::1"), .hop_limit = 255})
            .Icmpv6({.type = type, .body = std::vector<uint8_t>(16 + 8 * Below(2), 0)});
        return {b.Build(), from_web, absl::StrCat("icmpv6 type ", int(type))};
      }
      case 2:
        b.Ipv6({.src = Ipv6(from_web ? own6 : "fe80::1"), .dst = Ipv6(Chance(0.5) ? "ff02::1" : kBackendIp6),
                .hop_limit = 255})
            .NeighborAdvertisement({.target = Ipv6(Pick<const char*>({kWebIp6, kWebLinkLocal, kBackendIp6}))});
        return {b.Build(), from_web, "neighbour advertisement"};
      case 3: {
        // Solicitations and advertisements with link-layer options naming
        // web's MAC or another, malformed options, the wrong hop limit or
        // code, or behind a fragment header.
        std::optional<MacAddress> link_layer;
        if (Chance(0.6)) link_layer = Mac(Chance(0.7) ? kWebMac : kOtherMac);
        std::vector<uint8_t> more;
        switch (Below(5)) {
          case 0: more = LinkLayerOption(uint8_t(1 + Below(2)), Mac(Chance(0.5) ? kWebMac : kOtherMac)); break;
          case 1: more = {14, uint8_t(Below(3)), 0, 0, 0, 0, 0, 0}; break;  // a nonce, or a bad length
          case 2: more = {1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}; break;  // a 16-byte link-layer option
          default: break;
        }
        std::vector<Ipv6ExtensionHeader> chain;
        if (Chance(0.1)) chain.push_back(Ipv6Fragment{.more_fragments = Chance(0.5)});
        if (Chance(0.1)) chain.insert(chain.begin(), Ipv6HopByHop{});
        uint8_t hop_limit = Chance(0.9) ? 255 : Pick<uint8_t>({1, 64, 254});
        b.Ipv6({.src = Ipv6(from_web ? own6 : "fe80::1"), .dst = Ipv6("ff02::1:ff00:3"), .hop_limit = hop_limit,
                .extension_headers = chain});
        switch (Below(3)) {
          case 0:
            b.NeighborSolicitation({.target = Ipv6(kBackendIp6), .source_link_layer = link_layer, .options = more,
                                    .code = uint8_t(Chance(0.95) ? 0 : 1)});
            return {b.Build(), from_web, "neighbour solicitation"};
          case 1:
            b.NeighborAdvertisement({.target = Ipv6(Chance(0.8) ? kWebIp6 : kBackendIp6),
                                     .target_link_layer = link_layer, .options = more});
            return {b.Build(), from_web, "neighbour advertisement with options"};
          default:
            b.RouterSolicitation({.source_link_layer = link_layer, .options = more});
            return {b.Build(), from_web, "router solicitation"};
        }
      }
      case 4: {
        // IGMP to a group, and to a unicast peer (no membership message).
        const char* dst = Pick<const char*>({"224.0.0.22", "224.0.0.1", kBackendIp, kWorldIp});
        b.Ipv4({.src = Ipv4(from_web ? own4 : "10.0.0.1"), .dst = Ipv4(dst), .ttl = 1, .protocol = 2})
            .Payload({0x22, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4});
        return {b.Build(), from_web, absl::StrCat("igmp to ", dst)};
      }
      default:
        // IGMP's protocol number in IPv6 is no IGMP.
        b.Ipv6({.src = Ipv6(from_web ? kWebIp6 : kBackendIp6), .dst = Ipv6(from_web ? kBackendIp6 : kWebIp6),
                .next_header = 2})
            .Payload({0x22, 0, 0, 0, 0, 0, 0, 0});
        return {b.Build(), from_web, "ipv6 next header 2"};
    }
  }

  // A packet of the flow with something odd about it.
  Frame Mutated(const FlowSpec& f) {
    bool from_client = Chance(0.6);
    bool from_web = from_client == f.web_is_client;
    uint8_t flags = Pick<uint8_t>({kTcpSyn, kTcpAck, kTcpSyn | kTcpAck});
    switch (Below(9)) {
      case 0: {  // IPv4 options (or an IPv6 extension chain)
        std::vector<uint8_t> options = Chance(0.5) ? RandomIpv4Options() : std::vector<uint8_t>{};
        size_t n = options.empty() ? Below(41) : 0;
        for (size_t i = 0; i < n; ++i) options.push_back(Chance(0.5) ? Byte() : 1);
        std::vector<Ipv6ExtensionHeader> chain = RandomExtensionChain();
        std::string what = f.v6 ? absl::StrCat("extension chain of ", chain.size()) : "ipv4 options";
        return Make(f, from_client, FlowPacket(f, from_client, flags, 0, {.options = options}, {.extension_headers = chain}),
                    what);
      }
      case 1: {  // VLAN tags
        PacketBuilder b;
        b.Ethernet({.src = Mac(from_web ? kWebMac : kRouterMac)});
        size_t tags = 1 + Below(3);
        for (size_t i = 0; i < tags; ++i) b.Vlan({.tpid = uint16_t(Chance(0.5) ? ETH_P_8021Q : ETH_P_8021AD), .vid = 10});
        PacketBuilder ip;
        AddIp(ip, f, from_web);
        AddTransport(ip, f, from_client, flags, 0);
        b.Append(ip);
        return {b.Build(), from_web, absl::StrCat(tags, " vlan tags")};
      }
      case 2: {  // spoofed source MAC or IP: web's frame with other bytes in its place
        std::vector<uint8_t> frame = FlowPacket(f, f.web_is_client, flags).Build();
        if (Chance(0.5)) {
          MacAddress mac = Mac(kOtherMac);
          std::copy(mac.begin(), mac.end(), frame.begin() + 6);
        } else if (f.v6) {
          Ipv6Address src = Ipv6(Pick<const char*>({"fd00::99", kBackendIp6, "::", kWebLinkLocal}));
          std::copy(src.begin(), src.end(), frame.begin() + 14 + 8);
        } else {
          Ipv4Address src = Ipv4(Pick<const char*>({"10.0.0.99", kBackendIp, "0.0.0.0"}));
          std::copy(src.begin(), src.end(), frame.begin() + 14 + 12);
        }
        return {frame, true, "spoofed source"};
      }
      case 3: {  // cut at a layer boundary, lengths still claiming the whole packet
        std::vector<uint8_t> frame = FlowPacket(f, from_client, flags, 16).Build();
        size_t l4 = f.v6 ? 54 : 34;
        size_t cut = Pick<size_t>({14, 15, 20, l4 - 1, l4, l4 + 4, l4 + 8, l4 + 12, l4 + 19, l4 + 20, l4 + 28});
        if (cut < frame.size()) frame.resize(cut);
        return {frame, from_web, absl::StrCat("cut at ", cut)};
      }
      case 4: {  // cut at a layer boundary with consistent IP lengths
        size_t l4_bytes = Pick<size_t>({0, 1, 3, 4, 7, 8, 12, 19, 20});
        Ipv4Options v4{.total_length = uint16_t(20 + l4_bytes)};
        Ipv6Options v6{.payload_length = uint16_t(l4_bytes)};
        std::vector<uint8_t> frame = FlowPacket(f, from_client, flags, 0, v4, v6).Build();
        frame.resize(std::min(frame.size(), (f.v6 ? 54 : 34) + l4_bytes));
        return {frame, from_web, absl::StrCat("short datagram, ", l4_bytes, " bytes of l4")};
      }
      case 5: {  // bytes flipped anywhere in the headers
        std::vector<uint8_t> frame = FlowPacket(f, from_client, flags, 8).Build();
        size_t flips = 1 + Below(3);
        std::string what = "flipped";
        for (size_t i = 0; i < flips; ++i) {
          size_t at = Below(std::min<size_t>(frame.size(), 90));
          frame[at] = Byte();
          absl::StrAppend(&what, " @", at);
        }
        return {frame, from_web, what};
      }
      case 6: {  // a tunnel web sends to the peer
        FlowSpec tunnel = f;
        tunnel.proto = Pick<FlowProto>({FlowProto::kIpip, FlowProto::kGre, FlowProto::kSixInFour, FlowProto::kVxlan});
        tunnel.web_is_client = true;
        if (tunnel.proto != FlowProto::kVxlan && f.v6) tunnel.v6 = false;
        return Make(tunnel, true, FlowPacket(tunnel, true, 0), "tunnel");
      }
      case 7: {  // TCP with a data offset below 5, or a SYN-FIN
        PacketBuilder b = Base(from_web);
        AddIp(b, f, from_web);
        b.Tcp({.sport = from_client ? f.client_port : f.server_port, .dport = from_client ? f.server_port : f.client_port,
               .flags = Pick<uint8_t>({kTcpSyn | kTcpFin, kTcpSyn | kTcpRst, 0xff}),
               .data_offset = Chance(0.5) ? std::optional<uint8_t>(uint8_t(Below(6))) : std::nullopt});
        return {b.Build(), from_web, "odd tcp"};
      }
      default: {  // an IPv4 fragment field forged on a whole packet
        Ipv4Options v4{.id = uint16_t(Below(65536)), .more_fragments = Chance(0.5),
                       .fragment_offset = Pick<uint16_t>({0, 1, 2, 3, 100})};
        Ipv6Options v6{.extension_headers = {Ipv6Fragment{.offset = Pick<uint16_t>({0, 1, 2, 3}),
                                                          .more_fragments = Chance(0.5),
                                                          .identification = uint32_t(Below(1 << 20))}}};
        return Make(f, from_client, FlowPacket(f, from_client, flags, 8, v4, v6), "forged fragment fields");
      }
    }
  }

 private:
  std::mt19937_64 rng_;
};

class DifferentialTest : public DatapathTest {
 protected:
  void SetUp() override {
    DatapathTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    stockade_config config{};
    config.event_interval_ns = 0;  // a record for every drop, to compare each
    config.flags = STOCKADE_CONFIG_F_SET;
    ASSERT_TRUE(dp_->WriteConfig(config).ok());
    auto reader = EventReader::Open(dp_->events_fd(), [this](const drop_event& e) { events_.push_back(e); });
    ASSERT_TRUE(reader.ok()) << reader.status();
    reader_ = std::move(*reader);
    const std::pair<const char*, uint32_t> identities[] = {
        {"10.0.0.3/32", kBackend},      {"fd00::3/128", kBackend},         {"10.0.0.4/32", kFrontend},
        {"fd00::4/128", kFrontend},     {"198.51.100.0/24", kPartner},     {"2001:db8:1::/48", kPartner}};
    for (const auto& [cidr, identity] : identities) {
      auto prefix = ParseIpPrefix(cidr);
      ASSERT_TRUE(prefix.ok()) << prefix.status();
      maps_.ipcache.push_back({prefix->ToIpcacheKey(), ipcache_value{identity, 0}});
      ASSERT_TRUE(dp_->ipcache().Update(maps_.ipcache.back().first, maps_.ipcache.back().second).ok());
    }
    interface_ = {.netns_cookie = netns_cookie_, .ifindex = kTestRunIfindex, .pad = 0};
  }

  // Rules of a sequence: the web endpoint's, and now and then more.
  std::vector<DatapathRule> RulesFor(FrameGenerator& gen) {
    std::vector<DatapathRule> rules = WebRules();
    const uint8_t out = DIR_EGRESS, in = DIR_INGRESS;
    if (gen.Chance(0.15))
      rules.push_back({.rule_id = 50, .local_identity = kWeb, .remote_identity = kBackend, .direction = out,
                       .protocol = IPPROTO_TCP, .ports = {5432, 5432}, .action = POLICY_ACTION_DENY, .audit = true});
    if (gen.Chance(0.15))
      rules.push_back({.rule_id = 51, .local_identity = kWeb, .remote_identity = kBackend, .direction = out,
                       .protocol = IPPROTO_UDP, .ports = {4789, 4789}});
    if (gen.Chance(0.15))
      rules.push_back({.rule_id = 52, .local_identity = kWeb, .remote_identity = kBackend, .direction = out});
    if (gen.Chance(0.15))
      rules.push_back({.rule_id = 53, .local_identity = kWeb, .direction = in});
    if (gen.Chance(0.1))
      rules.push_back({.rule_id = 54, .local_identity = kWeb, .remote_identity = kPartner, .direction = out,
                       .protocol = IPPROTO_GRE});
    return rules;
  }

  void WriteRules(const std::vector<DatapathRule>& rules) {
    auto entries = CompilePolicyEntries(rules);
    ASSERT_TRUE(entries.ok()) << entries.status();
    ASSERT_TRUE(dp_->ClearPolicy().ok());
    for (const PolicyEntry& e : *entries) ASSERT_TRUE(dp_->WritePolicy(e.key, e.value).ok());
    maps_.policy = *entries;
  }

  // The endpoint record, or none (an attached interface the agent does not know).
  void WriteEndpoint(const std::optional<endpoint_info>& info) {
    maps_.endpoints.clear();
    if (info) {
      maps_.endpoints.push_back({interface_, *info});
      ASSERT_TRUE(dp_->endpoints().Update(interface_, *info).ok());
    } else {
      ASSERT_TRUE(dp_->endpoints().Clear().ok());
    }
  }

  std::optional<endpoint_info> EndpointFor(FrameGenerator& gen) {
    if (gen.Chance(0.02)) return std::nullopt;
    uint32_t flags = ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS;
    if (gen.Chance(0.2)) flags = gen.Pick<uint32_t>({0, ENDPOINT_F_ENFORCE_INGRESS, ENDPOINT_F_ENFORCE_EGRESS});
    if (gen.Chance(0.1)) flags |= ENDPOINT_F_AUDIT;
    if (gen.Chance(0.15)) flags |= ENDPOINT_F_ALLOW_VLAN;
    if (gen.Chance(0.03)) flags |= ENDPOINT_F_NOT_READY;
    return MakeEndpointInfo({.identity = kWeb, .ipv4 = kWebIp, .ipv6 = kWebIp6, .ipv6_link_local = kWebLinkLocal,
                             .mac = gen.Chance(0.9) ? kWebMac : "", .flags = flags,
                             .role = uint8_t(gen.Chance(0.2) ? HOOK_ROLE_IN_CONTAINER : HOOK_ROLE_HOST_VETH),
                             .policy_revision = 1});
  }

  // The hook where a frame web sends (or receives) is seen, for the endpoint's role.
  HookPoint HookFor(FrameGenerator& gen, bool from_web) {
    uint8_t role = maps_.endpoints.empty() ? uint8_t(HOOK_ROLE_HOST_VETH) : maps_.endpoints[0].second.role;
    bool receive_side = role == HOOK_ROLE_HOST_VETH ? from_web : !from_web;
    if (!receive_side) return HookPoint::kTcEgress;
    return gen.Chance(0.5) ? HookPoint::kXdp : HookPoint::kTcIngress;
  }

  // Runs the frame through the program; nullopt when BPF_PROG_TEST_RUN refuses it.
  std::optional<bool> KernelPasses(HookPoint hook, const std::vector<uint8_t>& frame) {
    int fd = hook == HookPoint::kTcIngress  ? dp_->tc_ingress_fd()
             : hook == HookPoint::kTcEgress ? dp_->tc_egress_fd()
                                            : dp_->xdp_fd();
    auto result = RunProgram(fd, frame);
    if (!result.ok()) return std::nullopt;
    if (hook == HookPoint::kXdp) return result->retval == XDP_PASS;
    return result->retval == TC_ACT_UNSPEC;
  }

  endpoint_key interface_{};
  MapState maps_;
  std::unique_ptr<EventReader> reader_;
  std::vector<drop_event> events_;
};

const char* HookName(HookPoint hook) {
  return hook == HookPoint::kTcIngress ? "tc ingress" : hook == HookPoint::kTcEgress ? "tc egress" : "xdp";
}

TEST_F(DifferentialTest, KernelAgreesWithTheModel) {
  const uint64_t seed = EnvNumber("STOCKADE_DIFF_SEED", kDefaultSeed);
  const size_t packets = EnvNumber("STOCKADE_DIFF_PACKETS", kDefaultPackets);
  std::cout << "differential test: seed " << seed << ", " << packets << " frames (STOCKADE_DIFF_SEED, "
            << "STOCKADE_DIFF_PACKETS)\n";
  FrameGenerator gen(seed);
  VerdictModel model(&maps_);
  size_t run = 0, refused = 0, sequences = 0, mismatches = 0;
  std::vector<std::string> reasons_seen(STOCKADE_REASON_SLOTS);
  std::vector<size_t> reason_counts(STOCKADE_REASON_SLOTS);
  auto start = std::chrono::steady_clock::now();

  while (run + refused < packets && mismatches < 10) {
    ++sequences;
    std::vector<DatapathRule> rules = RulesFor(gen);
    WriteRules(rules);
    std::optional<endpoint_info> ep = EndpointFor(gen);
    WriteEndpoint(ep);
    ASSERT_TRUE(dp_->conntrack().Clear().ok());
    ASSERT_TRUE(dp_->fragments().Clear().ok());
    // Remembered denies are not in the model: an entry outlives a sequence
    // (it holds for a second under an unchanged revision), and the next
    // sequence starts at the same revision.
    ASSERT_TRUE(dp_->denied_flows().Clear().ok());
    model.ClearFlows();
    ASSERT_TRUE(reader_->Drain().ok());
    events_.clear();

    struct Ran {
      Frame frame;
      HookPoint hook;
      Verdict expected;
    };
    std::vector<Ran> history;
    bool sequence_agrees = true;
    FlowSpec flow = gen.NewFlow();
    std::vector<Frame> queue;
    queue.push_back(gen.Conversation(flow, /*opening=*/true));
    size_t length = 8 + gen.Below(40);
    for (size_t step = 0; step < length; ++step) {
      if (queue.empty()) {
        size_t action = gen.Below(100);
        if (action < 35) {
          queue.push_back(gen.Conversation(flow, false));
        } else if (action < 43) {
          flow = gen.NewFlow();
          queue.push_back(gen.Conversation(flow, true));
        } else if (action < 51) {
          queue = gen.Fragments(flow);
        } else if (action < 61) {
          queue.push_back(gen.IcmpError(flow));
        } else if (action < 68) {
          queue.push_back(gen.LinkHousekeeping());
        } else if (action < 96) {
          queue.push_back(gen.Mutated(flow));
        } else if (ep) {
          // The agent changes the policy: a rule goes, the revision moves on.
          if (rules.size() > 1) rules.erase(rules.begin() + gen.Below(rules.size()));
          WriteRules(rules);
          ep->policy_revision++;
          WriteEndpoint(ep);
          history.push_back({{{}, false, absl::StrCat("revision ", ep->policy_revision, ", rules left ", rules.size())},
                             HookPoint::kXdp, {}});
          continue;
        } else {
          continue;
        }
      }
      if (queue.empty()) continue;  // a datagram of one fragment, and that one left out
      Frame frame = std::move(queue.front());
      queue.erase(queue.begin());
      HookPoint hook = HookFor(gen, frame.from_web);
      std::optional<bool> passes = KernelPasses(hook, frame.bytes);
      if (!passes) {
        ++refused;
        continue;
      }
      ++run;
      Verdict expected = model.Decide(hook, interface_, frame.bytes);
      reason_counts[stockade_reason_slot(expected.reason)]++;
      history.push_back({frame, hook, expected});
      if (*passes != (expected.verdict != VERDICT_DROPPED)) {
        sequence_agrees = false;
        ++mismatches;
        std::string trail;
        for (const Ran& r : history)
          absl::StrAppend(&trail, "    ", r.frame.what, r.frame.bytes.empty() ? "" : absl::StrCat(" at ", HookName(r.hook),
                          ": ", ToString(r.expected)), "\n");
        std::string kernel = *passes ? "passes" : "drops";
        if (reader_->Drain().ok() && !events_.empty()) {
          const drop_event& e = events_.back();
          absl::StrAppend(&kernel, " (last report: ",
                          ToString({.verdict = e.verdict, .reason = e.reason, .rule_id = e.rule_id,
                                    .direction = e.direction}), ")");
        }
        std::vector<uint32_t> rule_ids;
        for (const DatapathRule& r : rules) rule_ids.push_back(r.rule_id);
        ADD_FAILURE() << "seed " << seed << " sequence " << sequences << ": " << frame.what << " at "
                      << HookName(hook) << "\n  frame " << absl::BytesToHexString(std::string(
                                                             frame.bytes.begin(), frame.bytes.end()))
                      << "\n  kernel: " << kernel << "\n  model:  " << ToString(expected) << "\n  endpoint: "
                      << (ep ? absl::StrCat("flags ", ep->flags, " role ", ep->role, " revision ",
                                            ep->policy_revision)
                             : "none")
                      << ", rules " << absl::StrJoin(rule_ids, ",") << "\n  sequence so far:\n"
                      << trail;
        break;
      }
    }
    if (!sequence_agrees) continue;

    // Every drop and audit is reported: compare reason, rule, verdict and direction in order.
    // The records of allowed new flows are not the model's to predict (flow_records_test has them).
    ASSERT_TRUE(reader_->Drain().ok());
    std::vector<drop_event> drops;
    for (const drop_event& e : events_)
      if (e.verdict != VERDICT_FORWARDED) drops.push_back(e);
    std::vector<const Ran*> reported;
    for (const Ran& r : history)
      if (!r.frame.bytes.empty() && r.expected.verdict != VERDICT_FORWARDED) reported.push_back(&r);
    ASSERT_EQ(drops.size(), reported.size()) << "seed " << seed << " sequence " << sequences;
    for (size_t i = 0; i < drops.size(); ++i) {
      const drop_event& e = drops[i];
      Verdict kernel{.verdict = e.verdict, .reason = e.reason, .rule_id = e.rule_id, .direction = e.direction};
      if (kernel == reported[i]->expected) continue;
      ++mismatches;
      const Frame& frame = reported[i]->frame;
      ADD_FAILURE() << "seed " << seed << " sequence " << sequences << ": " << frame.what << " at "
                    << HookName(reported[i]->hook) << "\n  frame "
                    << absl::BytesToHexString(std::string(frame.bytes.begin(), frame.bytes.end()))
                    << "\n  kernel: " << ToString(kernel) << "\n  model:  " << ToString(reported[i]->expected);
      break;
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "differential test: " << run << " frames in " << sequences << " sequences, " << refused
            << " refused by BPF_PROG_TEST_RUN, " << seconds << " s\n  model's reasons:";
  for (size_t slot = 0; slot < reason_counts.size(); ++slot)
    if (reason_counts[slot] != 0) {
      int reason = slot == 0 ? REASON_NONE : -int(slot - 1 + STOCKADE_REASON_BASE);
      std::cout << " " << DropReasonName(reason) << "=" << reason_counts[slot];
    }
  std::cout << "\n";
  EXPECT_EQ(mismatches, 0u);
  // The generator must reach the stages it is meant to test.
  for (int reason : {REASON_NONE, DROP_POLICY_DENIED, DROP_SPOOFED_SOURCE, DROP_INVALID_PACKET, DROP_FRAG_NO_FIRST,
                     DROP_TUNNEL_DENIED, DROP_VLAN_TAGGED})
    EXPECT_GT(reason_counts[stockade_reason_slot(reason)], 0u) << DropReasonName(reason);
}

}  // namespace
}  // namespace stockade::testing

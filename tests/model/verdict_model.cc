// SPDX-License-Identifier: Apache-2.0
#include "tests/model/verdict_model.h"

#include <array>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace stockade::model {
namespace {

constexpr uint16_t kEtherIpv4 = 0x0800, kEtherIpv6 = 0x86dd, kEtherArp = 0x0806;
constexpr uint16_t kEtherVlan = 0x8100, kEtherQinQ = 0x88a8;
constexpr uint8_t kIcmp = 1, kIgmp = 2, kIpip = 4, kTcp = 6, kUdp = 17, kIpv6InIp = 41, kGre = 47, kIcmpv6 = 58,
                  kSctp = 132, kNoNextHeader = 59;
constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;

using Address = std::array<uint8_t, 16>;  // IPv4 in the first 4 bytes, the rest zero

// Big-endian reads that are only made after a size check.
uint16_t Be16(std::span<const uint8_t> b, size_t at) { return uint16_t(b[at] << 8 | b[at + 1]); }
uint32_t Be32(std::span<const uint8_t> b, size_t at) { return uint32_t(Be16(b, at)) << 16 | Be16(b, at + 2); }
std::span<const uint8_t> From(std::span<const uint8_t> b, size_t at) {
  return at >= b.size() ? std::span<const uint8_t>() : b.subspan(at);
}

bool IsZero(const uint8_t* bytes, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (bytes[i] != 0) return false;
  return true;
}

template <typename T>
std::string KeyBytes(const T& key) {
  return std::string(reinterpret_cast<const char*>(&key), sizeof(key));
}

// The ICMP of the packet's own family: ICMP in IPv4, ICMPv6 in IPv6. ICMPv6
// carried in IPv4 (or ICMP in IPv6) is no control message of that packet's
// stack: it is an unknown protocol, without ports, types or exemptions.
bool IsIcmpOfFamily(uint8_t protocol, uint8_t family) {
  return family == STOCKADE_AF_INET ? protocol == kIcmp : protocol == kIcmpv6;
}

bool IcmpIsError(uint8_t family, uint8_t type) {
  if (family == STOCKADE_AF_INET) return type == 3 || type == 4 || type == 11 || type == 12;
  return type >= 1 && type <= 4;  // unreachable, too big, time exceeded, parameter problem
}

// MLD and neighbour discovery keep an IPv6 link working.
bool Icmpv6IsLinkHousekeeping(uint8_t type) {
  return type == 130 || type == 131 || type == 132 || type == 143 || (type >= 133 && type <= 137);
}

// The upper-layer header's need, in bytes, before a verdict can be made.
size_t L4HeaderNeed(uint8_t protocol, uint8_t family) {
  if (protocol == kTcp) return 20;
  if (protocol == kUdp || IsIcmpOfFamily(protocol, family)) return 8;
  if (protocol == kSctp) return 4;
  return 0;
}

bool IsIpv6ExtensionWeWalk(uint8_t next) { return next == 0 || next == 43 || next == 44 || next == 51 || next == 60; }
// Extension headers whose layout we do not know: we cannot find what follows them.
bool IsIpv6ExtensionUnknown(uint8_t next) {
  return next == 135 || next == 139 || next == 140 || next == 253 || next == 254;
}

uint8_t PacketDirection(HookPoint hook, uint8_t role) {
  bool receive_side = hook != HookPoint::kTcEgress;  // XDP sits where TC ingress does
  if (role == HOOK_ROLE_HOST_VETH) return receive_side ? DIR_EGRESS : DIR_INGRESS;
  return receive_side ? DIR_INGRESS : DIR_EGRESS;
}

// Do the first `bits` bits of a and b agree?
bool PrefixEqual(const uint8_t* a, const uint8_t* b, uint32_t bits) {
  for (uint32_t i = 0; i < bits; ++i) {
    int shift = 7 - int(i % 8);
    if (((a[i / 8] >> shift) & 1) != ((b[i / 8] >> shift) & 1)) return false;
  }
  return true;
}

}  // namespace

std::string ToString(const Verdict& v) {
  const char* verdicts[] = {"FORWARDED", "DROPPED", "AUDIT"};
  return absl::StrCat(v.verdict < 3 ? verdicts[v.verdict] : "?", " ", std::string(DropReasonName(v.reason)), " rule ",
                      v.rule_id, v.direction == DIR_EGRESS ? " egress" : " ingress");
}

// What the verdict needs to know about one frame.
struct VerdictModel::Flow {
  enum class Kind { kIp, kArp, kLinkHousekeeping, kIcmpError };
  enum class Fragment { kWhole, kFirst, kLater };
  struct Quoted {  // the packet an ICMP error quotes, as it was sent
    uint8_t protocol = 0;
    Address saddr{}, daddr{};
    uint16_t sport = 0, dport = 0;
    bool icmp_echo = false;
  };

  int parse_error = REASON_NONE;
  bool has_ethernet = false;
  std::array<uint8_t, 6> eth_src{};
  bool vlan_tagged = false;
  Kind kind = Kind::kIp;
  uint8_t family = 0, protocol = 0;
  Address saddr{}, daddr{};
  uint16_t sport = 0, dport = 0;  // host order; an ICMP echo's identifier on the requester's side
  // An ICMP echo request or reply: a flow of its own kind, apart from every
  // other ICMP message between the same two, whatever its identifier.
  bool icmp_echo = false;
  uint16_t policy_port = 0;       // what policy matches: the destination port, or the ICMP type
  uint8_t tcp_flags = 0;
  uint8_t icmp_type = 0;
  Fragment fragment = Fragment::kWhole;
  uint32_t frag_id = 0;
  // The protocol named in the fragment header (IPv4: the header's protocol).
  // All fragments of a datagram carry the same one, so it keys the datagram;
  // in IPv6 the first fragment's upper-layer protocol may lie further down
  // a chain of extension headers the later fragments do not repeat.
  uint8_t frag_protocol = 0;
  std::array<uint8_t, 6> arp_sender_mac{};
  Address nd_target{};
  uint8_t hop_limit = 0;  // IPv6
  bool fragment_header = false;  // IPv6: one was in the chain, if only an atomic fragment's
  // The IPv4 options, or an RS, NS or NA's, walked once the rest of the
  // frame parsed; and the MAC ND's link-layer address options name.
  std::vector<uint8_t> options;
  std::optional<std::array<uint8_t, 6>> nd_link_layer;
  std::optional<Quoted> quoted;
};

namespace {

using Flow = VerdictModel::Flow;

// The ports (or the echo identifier standing in for one) of a header at `l4`.
// False: too few bytes for them.
bool ReadPorts(std::span<const uint8_t> l4, uint8_t protocol, uint8_t family, uint16_t& sport, uint16_t& dport,
               bool& icmp_echo) {
  if (protocol == kTcp || protocol == kUdp || protocol == kSctp) {
    if (l4.size() < 4) return false;
    sport = Be16(l4, 0);
    dport = Be16(l4, 2);
  } else if (IsIcmpOfFamily(protocol, family)) {
    if (l4.size() < 8) return false;
    uint8_t echo_request = family == STOCKADE_AF_INET ? 8 : 128;
    uint8_t echo_reply = family == STOCKADE_AF_INET ? 0 : 129;
    // A request is (id -> 0) and its reply (0 -> id): the reply finds the
    // request's flow, a request the other way does not.
    if (l4[0] == echo_request) sport = Be16(l4, 4);
    if (l4[0] == echo_reply) dport = Be16(l4, 4);
    icmp_echo = l4[0] == echo_request || l4[0] == echo_reply;
  }
  return true;
}

// The quoted packet of an ICMP error: its IP header as sent and its ports.
// Its IPv6 next header is taken as its protocol (no extension chain is walked).
std::optional<Flow::Quoted> ParseQuoted(std::span<const uint8_t> q, uint8_t family) {
  Flow::Quoted quoted;
  size_t l4_at;
  if (family == STOCKADE_AF_INET) {
    if (q.size() < 20 || q[0] >> 4 != 4 || (q[0] & 0xf) < 5) return std::nullopt;
    quoted.protocol = q[9];
    std::memcpy(quoted.saddr.data(), &q[12], 4);
    std::memcpy(quoted.daddr.data(), &q[16], 4);
    l4_at = (q[0] & 0xf) * 4u;
  } else {
    if (q.size() < 40 || q[0] >> 4 != 6) return std::nullopt;
    quoted.protocol = q[6];
    std::memcpy(quoted.saddr.data(), &q[8], 16);
    std::memcpy(quoted.daddr.data(), &q[24], 16);
    l4_at = 40;
  }
  if (!ReadPorts(From(q, l4_at), quoted.protocol, family, quoted.sport, quoted.dport, quoted.icmp_echo))
    return std::nullopt;
  return quoted;
}

bool IsNeighbourDiscovery(uint8_t type) { return type >= 133 && type <= 137; }

// RFC 4861: each message's length before its options (section 4), which is
// also its minimum.
size_t NeighbourDiscoveryFixedPart(uint8_t type) {
  switch (type) {
    case 133: return 8;   // router solicitation
    case 134: return 16;  // router advertisement
    case 137: return 40;  // redirect
    default: return 24;   // neighbour solicitation, advertisement
  }
}

// RS, NS, NA: the messages a container sends. Their options: at most 8
// (RFC 3971's four, a nonce, a link-layer address), none of length 0 or past
// the message; link-layer address options (types 1 and 2) 8 bytes long and
// all naming one MAC, which CheckSource() holds to the endpoint's.
int WalkNeighbourDiscoveryOptions(std::span<const uint8_t> options, Flow& f) {
  constexpr int kMaxOptions = 8;
  size_t at = 0;
  for (int count = 0; at < options.size(); ++count) {
    if (count == kMaxOptions) return DROP_ND_OPTION;
    if (at + 2 > options.size()) return DROP_ND_OPTION;
    size_t length = options[at + 1] * 8u;
    if (length == 0 || at + length > options.size()) return DROP_ND_OPTION;
    uint8_t type = options[at];
    if (type == 1 || type == 2) {
      if (length != 8) return DROP_ND_OPTION;
      std::array<uint8_t, 6> mac;
      std::memcpy(mac.data(), &options[at + 2], 6);
      if (f.nd_link_layer && *f.nd_link_layer != mac) return DROP_ND_OPTION;
      f.nd_link_layer = mac;
    }
    at += length;
  }
  return REASON_NONE;
}

int ParseNeighbourDiscoveryOptions(std::span<const uint8_t> options, Flow& f) {
  int reason = WalkNeighbourDiscoveryOptions(options, f);
  if (reason != REASON_NONE) return reason;
  // From the unspecified address (duplicate address detection) a
  // solicitation carries no source link-layer address (RFC 4861 4.1, 4.3).
  if (f.nd_link_layer && f.icmp_type != 136 && IsZero(f.saddr.data(), 16)) return DROP_ND_OPTION;
  return REASON_NONE;
}

// RFC 4861's validity checks, then (for what a container may send) the options.
int ParseNeighbourDiscovery(std::span<const uint8_t> message, Flow& f) {
  uint8_t type = message[0];
  size_t fixed = NeighbourDiscoveryFixedPart(type);
  if (f.hop_limit != 255 || message[1] != 0 || message.size() < fixed) return DROP_ND_INVALID;
  if (f.fragment_header) return DROP_ND_INVALID;  // never fragmented, not even atomically (RFC 6980)
  if (type == 136) std::memcpy(f.nd_target.data(), &message[8], 16);  // an advertisement names its target
  // Router advertisements and redirects: never from a container (CheckSource).
  if (type == 134 || type == 137) return REASON_NONE;
  std::span<const uint8_t> options = message.subspan(fixed);
  f.options.assign(options.begin(), options.end());
  return REASON_NONE;
}

// The upper-layer header. `l4` ends where the IP datagram ends.
void ParseUpperLayer(std::span<const uint8_t> l4, Flow& f) {
  if (l4.size() < L4HeaderNeed(f.protocol, f.family)) {
    // A first fragment too short for its L4 header is the tiny-fragment attack (RFC 1858).
    f.parse_error = f.fragment == Flow::Fragment::kFirst ? DROP_FRAG_TOO_SMALL : DROP_INVALID_PACKET;
    return;
  }
  ReadPorts(l4, f.protocol, f.family, f.sport, f.dport, f.icmp_echo);
  f.policy_port = f.dport;
  if (f.protocol == kTcp) {
    if (l4[12] >> 4 < 5) {
      f.parse_error = DROP_INVALID_PACKET;
      return;
    }
    f.tcp_flags = l4[13];
  } else if (IsIcmpOfFamily(f.protocol, f.family)) {
    f.icmp_type = l4[0];
    f.policy_port = l4[0];  // policy names ICMP by type, in the port's place
    if (IcmpIsError(f.family, l4[0])) {
      f.kind = Flow::Kind::kIcmpError;
      // A fragment's quote may be cut anywhere: not trusted to name a flow.
      if (f.fragment == Flow::Fragment::kWhole) f.quoted = ParseQuoted(From(l4, 8), f.family);
    } else if (f.family == STOCKADE_AF_INET6 && Icmpv6IsLinkHousekeeping(l4[0])) {
      f.kind = Flow::Kind::kLinkHousekeeping;
      if (IsNeighbourDiscovery(l4[0])) f.parse_error = ParseNeighbourDiscovery(l4, f);
    }
  } else if (f.protocol == kIgmp && f.family == STOCKADE_AF_INET && (f.daddr[0] & 0xf0) == 0xe0) {
    // Multicast membership is the link's business, as MLD is for IPv6. IGMP
    // to a unicast address is no membership message: a flow like any other.
    f.kind = Flow::Kind::kLinkHousekeeping;
  }
}

// IPv4 options (docs/security.md): source routes drop as such; record route,
// timestamp and every obsolete or unknown option drop; router alert (length
// 4) and the security labels (130, 133, 134) pass. An option list that does
// not parse, or anything but zeros after its end, drops.
int CheckIpv4Options(std::span<const uint8_t> options) {
  size_t at = 0;
  while (at < options.size()) {
    uint8_t type = options[at];
    if (type == 0) {  // end of the list: the rest is padding
      for (size_t i = at; i < options.size(); ++i)
        if (options[i] != 0) return DROP_IPV4_OPTION;
      return REASON_NONE;
    }
    if (type == 1) {  // no operation
      ++at;
      continue;
    }
    if (at + 2 > options.size()) return DROP_IPV4_OPTION;
    size_t length = options[at + 1];
    if (length < 2 || at + length > options.size()) return DROP_IPV4_OPTION;
    if (type == 131 || type == 137) return DROP_SOURCE_ROUTE;
    bool passes = (type == 148 && length == 4) || type == 130 || type == 133 || type == 134;
    if (!passes) return DROP_IPV4_OPTION;
    at += length;
  }
  return REASON_NONE;
}

void ParseIpv4(std::span<const uint8_t> l3, Flow& f) {
  if (l3.size() < 20 || l3[0] >> 4 != 4 || (l3[0] & 0xf) < 5) {
    f.parse_error = DROP_INVALID_PACKET;
    return;
  }
  size_t header_length = (l3[0] & 0xf) * 4u;
  size_t total_length = Be16(l3, 2);
  if (total_length < header_length || total_length > l3.size()) {
    f.parse_error = DROP_INVALID_PACKET;
    return;
  }
  std::span<const uint8_t> datagram = l3.first(total_length);
  f.family = STOCKADE_AF_INET;
  f.protocol = f.frag_protocol = l3[9];
  std::memcpy(f.saddr.data(), &l3[12], 4);
  std::memcpy(f.daddr.data(), &l3[16], 4);
  f.options.assign(l3.begin() + 20, l3.begin() + header_length);
  uint16_t offset = Be16(l3, 6) & 0x1fff;
  bool more_fragments = Be16(l3, 6) & 0x2000;
  f.frag_id = Be16(l3, 4);
  // Offset 1 (8 bytes) lands inside a TCP header and can rewrite its flags (RFC 1858).
  if (offset == 1 && f.protocol == kTcp) {
    f.parse_error = DROP_FRAG_TOO_SMALL;
    return;
  }
  if (offset != 0) {
    f.fragment = Flow::Fragment::kLater;
    return;
  }
  if (more_fragments) f.fragment = Flow::Fragment::kFirst;
  ParseUpperLayer(datagram.subspan(header_length), f);
}

// RFC 8200 4.1's order: hop-by-hop only first; routing, fragment and AH at
// most once each; destination options at most twice, the first before a
// routing header. False: the chain breaks it.
struct ExtensionOrder {
  int headers = 0, routing = 0, fragment = 0, auth = 0, destination = 0;
  bool routing_after_first_destination = false;

  bool Add(uint8_t next) {
    bool first = headers++ == 0;
    switch (next) {
      case 0: return first;
      case 43:
        routing_after_first_destination = destination == 1;
        return ++routing == 1;
      case 44: return ++fragment == 1;
      case 51: return ++auth == 1;
      case 60: return ++destination == 1 || (destination == 2 && routing_after_first_destination);
    }
    return true;
  }
};

void ParseIpv6(std::span<const uint8_t> l3, Flow& f) {
  if (l3.size() < 40 || l3[0] >> 4 != 6) {
    f.parse_error = DROP_INVALID_PACKET;
    return;
  }
  size_t payload_length = Be16(l3, 4);
  // Zero is a jumbogram, which nothing here sends.
  if (payload_length == 0 || 40 + payload_length > l3.size()) {
    f.parse_error = DROP_INVALID_PACKET;
    return;
  }
  std::span<const uint8_t> datagram = l3.first(40 + payload_length);
  f.family = STOCKADE_AF_INET6;
  f.hop_limit = l3[7];
  std::memcpy(f.saddr.data(), &l3[8], 16);
  std::memcpy(f.daddr.data(), &l3[24], 16);
  uint8_t next = l3[6];
  size_t at = 40;
  ExtensionOrder order;
  while (IsIpv6ExtensionWeWalk(next)) {
    if (!order.Add(next)) {
      f.parse_error = DROP_IPV6_EXT_ORDER;
      return;
    }
    if (at + 8 > datagram.size()) {
      f.parse_error = DROP_INVALID_PACKET;
      return;
    }
    std::span<const uint8_t> ext = datagram.subspan(at);
    size_t length;
    if (next == 44) {
      length = 8;
      uint16_t offset = Be16(ext, 2) >> 3;
      bool more_fragments = Be16(ext, 2) & 1;
      f.frag_id = Be32(ext, 4);
      f.frag_protocol = ext[0];
      if (offset == 1 && ext[0] == kTcp) {
        f.parse_error = DROP_FRAG_TOO_SMALL;
        return;
      }
      if (offset != 0) {
        f.fragment = Flow::Fragment::kLater;
        f.protocol = ext[0];
        return;
      }
      // Offset 0 without more fragments is an atomic fragment: a whole datagram.
      if (more_fragments) f.fragment = Flow::Fragment::kFirst;
      f.fragment_header = true;
    } else {
      // Routing type 0 lets a sender bounce a packet through any list of hops (RFC 5095).
      if (next == 43 && ext[2] == 0) {
        f.parse_error = DROP_IPV6_ROUTING_TYPE0;
        return;
      }
      // Any other type with segments left still to visit sends the packet
      // past the destination policy decided on.
      if (next == 43 && ext[3] != 0) {
        f.parse_error = DROP_SOURCE_ROUTE;
        return;
      }
      // AH counts 4-byte words less 2; the others 8-byte units less 1.
      length = next == 51 ? (ext[1] + 2u) * 4 : (ext[1] + 1u) * 8;
    }
    if (at + length > datagram.size()) {
      f.parse_error = DROP_INVALID_PACKET;
      return;
    }
    next = ext[0];
    at += length;
  }
  if (IsIpv6ExtensionUnknown(next)) {
    f.parse_error = DROP_IPV6_EXT_UNKNOWN;
    return;
  }
  f.protocol = next;
  if (next == kNoNextHeader) return;
  ParseUpperLayer(datagram.subspan(at), f);
}

void ParseArp(std::span<const uint8_t> l3, Flow& f) {
  // Ethernet and IPv4 only: hardware type 1, protocol 0x0800, lengths 6 and 4.
  if (l3.size() < 28 || Be16(l3, 0) != 1 || Be16(l3, 2) != kEtherIpv4 || l3[4] != 6 || l3[5] != 4) {
    f.parse_error = DROP_INVALID_PACKET;
    return;
  }
  f.kind = Flow::Kind::kArp;
  f.family = STOCKADE_AF_INET;
  std::memcpy(f.arp_sender_mac.data(), &l3[8], 6);
  std::memcpy(f.saddr.data(), &l3[14], 4);
  std::memcpy(f.daddr.data(), &l3[24], 4);
}

Flow ParseFrame(std::span<const uint8_t> frame) {
  constexpr int kMaxVlanTags = 2;
  Flow f;
  if (frame.size() < 14) {
    f.parse_error = DROP_INVALID_PACKET;
    return f;
  }
  f.has_ethernet = true;
  std::memcpy(f.eth_src.data(), &frame[6], 6);
  uint16_t ethertype = Be16(frame, 12);
  size_t at = 14;
  for (int tags = 0; ethertype == kEtherVlan || ethertype == kEtherQinQ; ++tags) {
    f.vlan_tagged = true;
    if (tags == kMaxVlanTags) {
      f.parse_error = DROP_VLAN_TAGGED;
      return f;
    }
    if (at + 4 > frame.size()) {
      f.parse_error = DROP_INVALID_PACKET;
      return f;
    }
    ethertype = Be16(frame, at + 2);
    at += 4;
  }
  std::span<const uint8_t> l3 = frame.subspan(at);
  if (ethertype == kEtherArp)
    ParseArp(l3, f);
  else if (ethertype == kEtherIpv4)
    ParseIpv4(l3, f);
  else if (ethertype == kEtherIpv6)
    ParseIpv6(l3, f);
  else
    f.parse_error = DROP_UNSUPPORTED_L3;
  if (f.parse_error == REASON_NONE && !f.options.empty())
    f.parse_error = f.family == STOCKADE_AF_INET ? CheckIpv4Options(f.options)
                                                 : ParseNeighbourDiscoveryOptions(f.options, f);
  return f;
}

bool IsOwnIpv6(const Address& a, const endpoint_info& ep) {
  return (!IsZero(ep.ipv6, 16) && std::memcmp(a.data(), ep.ipv6, 16) == 0) ||
         (!IsZero(ep.ipv6_link_local, 16) && std::memcmp(a.data(), ep.ipv6_link_local, 16) == 0);
}

bool IsOwnIpv4(const Address& a, const endpoint_info& ep) {
  return ep.ipv4 != 0 && std::memcmp(a.data(), &ep.ipv4, 4) == 0;
}

// ARP from the endpoint names only its own addresses; a probe (sender
// 0.0.0.0, RFC 5227) claims nothing.
int CheckArp(const Flow& f, const endpoint_info& ep, uint8_t dir) {
  if (dir != DIR_EGRESS) return REASON_NONE;
  if (!IsZero(ep.mac, 6) && std::memcmp(f.arp_sender_mac.data(), ep.mac, 6) != 0) return DROP_SPOOFED_SOURCE;
  if (IsZero(f.saddr.data(), 4)) return REASON_NONE;
  return IsOwnIpv4(f.saddr, ep) ? REASON_NONE : DROP_SPOOFED_SOURCE;
}

// What the endpoint sends carries its own source address. Neighbour
// discovery: router messages never come from a container, an advertisement
// names only the endpoint's own address, a link-layer option only its own
// MAC, and :: is the unspecified source of duplicate address detection.
int CheckSource(const Flow& f, const endpoint_info& ep) {
  if (f.family == STOCKADE_AF_INET) return IsOwnIpv4(f.saddr, ep) ? REASON_NONE : DROP_SPOOFED_SOURCE;
  if (f.kind == Flow::Kind::kLinkHousekeeping) {
    if (f.icmp_type == 134 || f.icmp_type == 137) return DROP_ND_ROUTER_MSG;
    if (f.icmp_type == 136 && !IsOwnIpv6(f.nd_target, ep)) return DROP_SPOOFED_SOURCE;
    // Its link-layer options name its own MAC (or, not known, the one it sends from).
    const uint8_t* own_mac = IsZero(ep.mac, 6) ? f.eth_src.data() : ep.mac;
    if (f.nd_link_layer && std::memcmp(f.nd_link_layer->data(), own_mac, 6) != 0) return DROP_ND_OPTION;
    if (f.icmp_type != 136 && IsZero(f.saddr.data(), 16)) return REASON_NONE;
  }
  return IsOwnIpv6(f.saddr, ep) ? REASON_NONE : DROP_SPOOFED_SOURCE;
}

// One key for both directions of a flow at one interface: the lower
// (address, port) side first. Returns whether the packet's source is side a.
bool FillFlowKey(ct_key& key, const endpoint_key& interface, uint8_t family, uint8_t protocol, bool icmp_echo,
                 const Address& src, uint16_t sport, const Address& dst, uint16_t dport) {
  int order = std::memcmp(src.data(), dst.data(), 16);
  bool src_first = order < 0 || (order == 0 && sport < dport);
  std::memset(&key, 0, sizeof(key));
  std::memcpy(key.addr_a, (src_first ? src : dst).data(), 16);
  std::memcpy(key.addr_b, (src_first ? dst : src).data(), 16);
  key.port_a = src_first ? sport : dport;  // the model's own table: host order will do
  key.port_b = src_first ? dport : sport;
  key.ifindex = interface.ifindex;
  key.netns_cookie = interface.netns_cookie;
  key.protocol = protocol;
  key.family = family;
  key.icmp_echo = icmp_echo;
  return src_first;
}

// TCP: a bare SYN opens (SYN_SENT), any reply to it establishes, a FIN
// starts closing, FINs both ways or a RST close.
void AdvanceTcp(ct_entry& e, uint8_t flags, bool is_reply) {
  if (flags & kTcpRst) {
    e.tcp_state = CT_TCP_CLOSED;
  } else if (flags & kTcpFin) {
    e.flags |= is_reply ? CT_F_FIN_REPLY : CT_F_FIN_ORIGIN;
    bool both = (e.flags & CT_F_FIN_REPLY) && (e.flags & CT_F_FIN_ORIGIN);
    e.tcp_state = both ? CT_TCP_CLOSED : CT_TCP_CLOSING;
  } else if (e.tcp_state == CT_TCP_SYN_SENT && is_reply) {
    e.tcp_state = CT_TCP_ESTABLISHED;
  }
}

bool IsBareSyn(uint8_t flags) { return (flags & (kTcpSyn | kTcpAck)) == kTcpSyn; }

}  // namespace

struct VerdictModel::PolicyAnswer {
  int reason = REASON_NONE;
  uint32_t rule_id = 0;
  bool audit_only = false;  // the deny came from an audit rule
};

void VerdictModel::ClearFlows() {
  conntrack_.clear();
  fragments_.clear();
}

uint32_t VerdictModel::IdentityOf(const uint8_t addr[16], uint8_t family) const {
  ipcache_key wanted{};
  wanted.family = family;
  std::memcpy(wanted.addr, addr, 16);
  const uint8_t* wanted_bits = reinterpret_cast<const uint8_t*>(&wanted) + sizeof(wanted.prefixlen);
  uint32_t max_bits = IPCACHE_PREFIX_FIXED_BITS + (family == STOCKADE_AF_INET ? 32 : 128);
  std::optional<uint32_t> best_length, identity;
  for (const auto& [key, value] : maps_->ipcache) {
    const uint8_t* bits = reinterpret_cast<const uint8_t*>(&key) + sizeof(key.prefixlen);
    if (key.prefixlen > max_bits || (best_length && key.prefixlen <= *best_length)) continue;
    if (!PrefixEqual(bits, wanted_bits, key.prefixlen)) continue;
    best_length = key.prefixlen;
    identity = value.identity;
  }
  return identity.value_or(IDENTITY_WORLD);  // an address no prefix covers is the world
}

std::optional<policy_value> VerdictModel::LongestPolicyMatch(const policy_key& wanted) const {
  const uint8_t* wanted_bits = reinterpret_cast<const uint8_t*>(&wanted) + sizeof(wanted.prefixlen);
  std::optional<uint32_t> best_length;
  std::optional<policy_value> best;
  for (const PolicyEntry& entry : maps_->policy) {
    const uint8_t* bits = reinterpret_cast<const uint8_t*>(&entry.key) + sizeof(entry.key.prefixlen);
    if (best_length && entry.key.prefixlen <= *best_length) continue;
    if (!PrefixEqual(bits, wanted_bits, entry.key.prefixlen)) continue;
    best_length = entry.key.prefixlen;
    best = entry.value;
  }
  return best;
}

// maps/policy.h: the most specific entry for the remote identity and the
// most specific for any remote; a deny in either wins; no match where the
// direction is enforced is a deny. Tunnels the endpoint sends (IP-in-IP,
// 6in4, GRE, and VXLAN or Geneve by the flow's UDP destination port) pass
// only under an entry that names its protocol, enforced or not.
VerdictModel::PolicyAnswer VerdictModel::DecidePolicy(const endpoint_info& ep, uint8_t direction,
                                                      uint32_t remote_identity, uint8_t protocol,
                                                      uint16_t policy_port) const {
  PolicyAnswer answer;
  uint32_t enforce_flag = direction == DIR_INGRESS ? ENDPOINT_F_ENFORCE_INGRESS : ENDPOINT_F_ENFORCE_EGRESS;
  bool enforced = ep.flags & enforce_flag;
  bool udp_tunnel = protocol == kUdp && (policy_port == 4789 || policy_port == 8472 || policy_port == 6081);
  bool tunnel = direction == DIR_EGRESS && (protocol == kIpip || protocol == kIpv6InIp || protocol == kGre || udp_tunnel);
  if (!enforced && !tunnel) return answer;

  policy_key key{};
  key.prefixlen = POLICY_PREFIX_FULL;
  key.local_identity = ep.identity;
  key.remote_identity = remote_identity;
  key.direction = direction;
  key.protocol = protocol;
  key.dport = uint16_t(policy_port >> 8 | policy_port << 8);  // network order, as in the map
  std::optional<policy_value> for_remote = LongestPolicyMatch(key);
  key.remote_identity = IDENTITY_ANY;
  std::optional<policy_value> for_any = LongestPolicyMatch(key);

  for (const std::optional<policy_value>& v : {for_remote, for_any}) {
    if (v && v->action == POLICY_ACTION_DENY) {
      answer.reason = DROP_POLICY_DENIED;
      answer.rule_id = v->rule_id;
      answer.audit_only = v->flags & POLICY_F_AUDIT;
      return answer;
    }
  }
  std::optional<policy_value> allow = for_remote ? for_remote : for_any;
  if (tunnel && !(allow && (allow->flags & POLICY_F_EXPLICIT_PROTOCOL))) {
    answer.reason = DROP_TUNNEL_DENIED;
    answer.rule_id = allow ? allow->rule_id : 0;
    return answer;
  }
  if (allow) {
    answer.rule_id = allow->rule_id;
    // requireTLS is not modelled yet (see Enforce(), on an established flow).
    return answer;
  }
  if (enforced) answer.reason = DROP_POLICY_DENIED;  // default deny
  return answer;
}

// An ICMP error passes as part of a tracked flow when it goes back to the
// quoted packet's sender (anything else is forged) and the quoted flow's
// entry was made or confirmed under the endpoint's current policy revision:
// a revoked flow gets no errors through either.
bool VerdictModel::ErrorIsAboutOurFlow(const endpoint_key& interface, const endpoint_info& ep, const Flow& f) {
  if (f.kind != Flow::Kind::kIcmpError || !f.quoted) return false;
  const Flow::Quoted& q = *f.quoted;
  if (q.saddr != f.daddr) return false;
  ct_key key;
  FillFlowKey(key, interface, f.family, q.protocol, q.icmp_echo, q.saddr, q.sport, q.daddr, q.dport);
  auto it = conntrack_.find(KeyBytes(key));
  return it != conntrack_.end() && it->second.policy_revision == ep.policy_revision;
}

int VerdictModel::Enforce(const endpoint_key& interface, const endpoint_info& ep, Flow& f, Verdict& out) {
  const uint8_t dir = out.direction;
  if (ep.flags & ENDPOINT_F_NOT_READY) return DROP_ENDPOINT_NOT_READY;
  // The Ethernet header is judged before whatever follows it is: a frame from
  // a foreign MAC or with a VLAN tag is that, whether or not the rest parses.
  if (f.has_ethernet) {
    if (f.vlan_tagged && !(ep.flags & ENDPOINT_F_ALLOW_VLAN)) return DROP_VLAN_TAGGED;
    if (dir == DIR_EGRESS && !IsZero(ep.mac, 6) && std::memcmp(f.eth_src.data(), ep.mac, 6) != 0)
      return DROP_SPOOFED_SOURCE;
  }
  if (f.parse_error != REASON_NONE) return f.parse_error;
  if (f.kind == Flow::Kind::kArp) return CheckArp(f, ep, dir);
  if (dir == DIR_EGRESS) {
    int reason = CheckSource(f, ep);
    if (reason != REASON_NONE) return reason;
  }
  if (f.kind == Flow::Kind::kLinkHousekeeping) return REASON_NONE;  // keeps the link working: not a flow

  if (f.fragment != Flow::Fragment::kWhole) {
    frag_key key{};
    std::memcpy(key.saddr, f.saddr.data(), 16);
    std::memcpy(key.daddr, f.daddr.data(), 16);
    key.id = f.frag_id;
    key.protocol = f.frag_protocol;
    key.family = f.family;
    if (f.fragment == Flow::Fragment::kFirst) {
      fragments_[KeyBytes(key)] =
          frag_value{.sport = f.sport, .dport = f.dport, .policy_port = f.policy_port, .protocol = f.protocol, .icmp_echo = f.icmp_echo};
    } else {
      auto it = fragments_.find(KeyBytes(key));
      // Without its first fragment, a fragment has no ports to be judged by.
      if (it == fragments_.end()) return DROP_FRAG_NO_FIRST;
      f.sport = it->second.sport;
      f.dport = it->second.dport;
      f.policy_port = it->second.policy_port;
      // A later fragment is the first's datagram: its protocol too, whatever
      // header its own fragment header names next.
      f.protocol = it->second.protocol;
      f.icmp_echo = it->second.icmp_echo;
    }
  }

  if (ErrorIsAboutOurFlow(interface, ep, f)) return REASON_NONE;

  ct_key key;
  bool src_is_a = FillFlowKey(key, interface, f.family, f.protocol, f.icmp_echo, f.saddr, f.sport, f.daddr, f.dport);
  auto it = conntrack_.find(KeyBytes(key));
  // A bare SYN on a closed flow's tuple is a new connection, decided anew.
  bool live = it != conntrack_.end() &&
              !(it->second.tcp_state == CT_TCP_CLOSED && f.protocol == kTcp && IsBareSyn(f.tcp_flags));
  if (live) {
    ct_entry& e = it->second;
    bool origin_is_a = e.flags & CT_F_ORIGIN_IS_A;
    bool is_reply = src_is_a != origin_is_a;
    out.rule_id = e.rule_id;
    if (e.policy_revision != ep.policy_revision) {
      // Decided under an older policy: the flow's first packet is judged
      // again (its direction, its remote, its port) under the current one.
      const Address& origin_src = is_reply ? f.daddr : f.saddr;
      const Address& origin_dst = is_reply ? f.saddr : f.daddr;
      const Address& remote = e.direction == DIR_EGRESS ? origin_dst : origin_src;
      PolicyAnswer answer =
          DecidePolicy(ep, e.direction, IdentityOf(remote.data(), f.family), f.protocol, e.policy_port);
      out.rule_id = answer.rule_id;
      // A revoked flow keeps its entry and stays cut both ways. What audit
      // lets through it keeps letting through, without a report per packet.
      if (answer.reason != REASON_NONE && !answer.audit_only && !(ep.flags & ENDPOINT_F_AUDIT))
        return answer.reason;
      e.policy_revision = ep.policy_revision;
      e.rule_id = answer.rule_id;
    }
    // requireTLS goes here, once modelled: a flow whose allowing entry had
    // POLICY_F_REQUIRE_TLS (CT_F_TLS_REQUIRED, set at creation below) judges
    // the client's first TCP payload: a TLS ClientHello record marks it
    // verified, anything else is DROP_TLS_REQUIRED and remembered
    // (CT_F_DENIED, deny_reason) until the revision changes.
    ++e.packets;
    if (is_reply) e.flags |= CT_F_SEEN_REPLY;
    if (f.protocol == kTcp) AdvanceTcp(e, f.tcp_flags, is_reply);
    // An audited flow is reported once, on its first packet: its follow-ups
    // and replies pass as forwarded (CT_F_AUDIT marks the entry).
    return REASON_NONE;
  }

  const Address& remote = dir == DIR_EGRESS ? f.daddr : f.saddr;
  PolicyAnswer answer = DecidePolicy(ep, dir, IdentityOf(remote.data(), f.family), f.protocol, f.policy_port);
  out.rule_id = answer.rule_id;
  if (answer.reason != REASON_NONE) {
    if (!answer.audit_only && !(ep.flags & ENDPOINT_F_AUDIT)) return answer.reason;
    out.verdict = VERDICT_AUDIT;
  }
  ct_entry e{};
  e.packets = 1;
  e.rule_id = answer.rule_id;
  e.policy_revision = ep.policy_revision;
  e.direction = dir;
  e.flags = uint8_t((src_is_a ? CT_F_ORIGIN_IS_A : 0) | (out.verdict == VERDICT_AUDIT ? CT_F_AUDIT : 0));
  e.policy_port = f.policy_port;
  if (f.protocol == kTcp) {
    // A flow first seen mid-stream (after an upgrade, say) is taken as established.
    e.tcp_state = IsBareSyn(f.tcp_flags) ? CT_TCP_SYN_SENT : CT_TCP_ESTABLISHED;
    AdvanceTcp(e, f.tcp_flags, false);
  }
  conntrack_[KeyBytes(key)] = e;
  return answer.reason;
}

Verdict VerdictModel::Decide(HookPoint hook, const endpoint_key& interface, std::span<const uint8_t> frame) {
  Verdict out;
  const endpoint_info* ep = nullptr;
  for (const auto& [key, info] : maps_->endpoints)
    if (key.netns_cookie == interface.netns_cookie && key.ifindex == interface.ifindex) ep = &info;
  // Attached but unknown: fail closed, and without a role take it for a host veth.
  out.direction = PacketDirection(hook, ep ? ep->role : uint8_t(HOOK_ROLE_HOST_VETH));
  if (ep == nullptr) {
    out.reason = DROP_ENDPOINT_UNKNOWN;
    out.verdict = VERDICT_DROPPED;
    return out;
  }
  Flow flow = ParseFrame(frame);
  out.reason = Enforce(interface, *ep, flow, out);
  if (out.reason != REASON_NONE && out.verdict != VERDICT_AUDIT) out.verdict = VERDICT_DROPPED;
  if (out.verdict == VERDICT_FORWARDED) out.rule_id = 0;  // reported only with a drop or an audit
  return out;
}

}  // namespace stockade::model

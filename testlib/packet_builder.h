// Fluent builder for Ethernet frames used by the table-driven BPF tests
// (BPF_PROG_TEST_RUN), the differential tester and the microbenchmark.
//
// A packet is a stack of layers, outermost first. Each layer is described by
// an options struct with sensible defaults, so a test only names the fields
// it cares about:
//
//   std::vector<uint8_t> frame =
//       PacketBuilder()
//           .Ethernet()
//           .Vlan({.vid = 100})
//           .Ipv4({.src = Ipv4("10.0.0.1"), .dst = Ipv4("10.0.0.2")})
//           .Tcp({.dport = 443, .flags = kTcpSyn})
//           .Build();
//
// Whatever links one layer to the next (ethertypes, IP protocol numbers,
// IPv6 next-header chains, lengths, checksums) is derived at Build() time, so
// a frame is well formed unless a test asks otherwise through one of the
// override fields, which exist to build the broken packets a parser must
// survive. Every options field has a default member initializer so that
// designated initializers compile warning-free under -Wextra.
#ifndef STOCKADE_TESTLIB_PACKET_BUILDER_H_
#define STOCKADE_TESTLIB_PACKET_BUILDER_H_

// Only this UAPI header: the ICMP/ARP ones clash with their glibc twins
// (struct icmphdr, icmp6_filter, ...) in whichever mix a test includes.
#include <linux/if_ether.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

namespace stockade::testing {

using MacAddress = std::array<uint8_t, 6>;
using Ipv4Address = std::array<uint8_t, 4>;
using Ipv6Address = std::array<uint8_t, 16>;

// Address parsers for test tables. They abort with a message naming the
// offending text on bad input, because a typo in a test table is a bug in the
// test, not a condition to handle.
MacAddress Mac(std::string_view text);    // "02:00:00:00:00:01"
Ipv4Address Ipv4(std::string_view text);  // "10.0.0.1"
// The address as stored in struct iphdr or a BPF map key: its in-memory
// bytes are the address in network order.
uint32_t Ipv4NetworkOrder(std::string_view text);
Ipv6Address Ipv6(std::string_view text);  // "fd00::1"

// RFC 1071 ones'-complement sum of `data` (an odd trailing byte is padded
// with zero), folded to 16 bits and continuing from `initial`. Chaining sums
// is only valid when the earlier data had even length. Data that carries a
// correct Internet checksum sums to 0xffff.
uint16_t OnesComplementSum(std::span<const uint8_t> data, uint16_t initial = 0);

// TCP flag bits as they appear in byte 13 of the TCP header.
inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;
inline constexpr uint8_t kTcpUrg = 0x20;
inline constexpr uint8_t kTcpEce = 0x40;
inline constexpr uint8_t kTcpCwr = 0x80;

inline constexpr uint16_t kVxlanUdpPort = 4789;  // IANA-assigned.

// The checksummed layers share two knobs: `checksum` writes the given value
// verbatim (e.g. 0 for "no UDP checksum"), and `bad_checksum` writes a value
// guaranteed to fail verification. `checksum` wins when both are set.

struct EthernetOptions {
  MacAddress src = {0x02, 0, 0, 0, 0, 0x01};
  MacAddress dst = {0x02, 0, 0, 0, 0, 0x02};
  // Derived from the next layer (VLAN TPID, IPv4, IPv6, ARP) unless set.
  std::optional<uint16_t> ethertype = std::nullopt;
};

// One VLAN tag. The tag's TPID is written by the layer before it, so stacking
// .Vlan({.tpid = ETH_P_8021AD, ...}).Vlan({...}) yields an 802.1ad S-tag
// followed by an 802.1Q C-tag.
struct VlanOptions {
  uint16_t tpid = ETH_P_8021Q;
  uint16_t vid = 1;  // 12 bits.
  uint8_t pcp = 0;   // 3 bits.
  bool dei = false;
  // Encapsulated ethertype; derived from the next layer unless set.
  std::optional<uint16_t> ethertype = std::nullopt;
};

// ARP for IPv4 over Ethernet.
struct ArpOptions {
  uint16_t op = 1;  // ARPOP_REQUEST.
  MacAddress sender_mac = {0x02, 0, 0, 0, 0, 0x01};
  Ipv4Address sender_ip = {10, 0, 0, 1};
  MacAddress target_mac = {};
  Ipv4Address target_ip = {10, 0, 0, 2};
};

struct Ipv4Options {
  Ipv4Address src = {10, 0, 0, 1};
  Ipv4Address dst = {10, 0, 0, 2};
  uint8_t tos = 0;
  uint16_t id = 0;
  bool dont_fragment = false;
  bool more_fragments = false;
  uint16_t fragment_offset = 0;  // In 8-byte units, 13 bits.
  uint8_t ttl = 64;
  // Raw option bytes, zero-padded (End of Options List) to a multiple of 4;
  // ihl grows accordingly. At most 40 bytes.
  std::vector<uint8_t> options = {};
  // Overrides, written verbatim, for malformed packets. Without them ihl and
  // total_length describe the bytes actually built and protocol is derived
  // from the next layer (IPPROTO_NONE if there is none).
  std::optional<uint8_t> ihl = std::nullopt;
  std::optional<uint16_t> total_length = std::nullopt;
  std::optional<uint8_t> protocol = std::nullopt;
  std::optional<uint16_t> checksum = std::nullopt;
  bool bad_checksum = false;
};

// IPv6 extension headers. Each writes its own length field; `next_header`
// overrides the Next Header byte, which is otherwise the type of the
// following extension header or the upper-layer protocol.

// Hop-by-hop and destination options share a format. `options` are raw TLVs;
// Pad1/PadN is appended to reach a multiple of 8 bytes.
struct Ipv6HopByHop {
  std::vector<uint8_t> options = {};
  std::optional<uint8_t> next_header = std::nullopt;
};
struct Ipv6DestinationOptions {
  std::vector<uint8_t> options = {};
  std::optional<uint8_t> next_header = std::nullopt;
};

struct Ipv6Routing {
  uint8_t routing_type = 0;
  uint8_t segments_left = 0;
  // The bytes after Segments Left, then `addresses`, then zero padding to a
  // multiple of 8. The default 4 zero bytes are the reserved field of types
  // 0 and 2, after which those types carry their addresses.
  std::vector<uint8_t> data = {0, 0, 0, 0};
  std::vector<Ipv6Address> addresses = {};
  std::optional<uint8_t> next_header = std::nullopt;
};

struct Ipv6Fragment {
  uint16_t offset = 0;  // In 8-byte units, 13 bits.
  bool more_fragments = false;
  uint32_t identification = 0;
  std::optional<uint8_t> next_header = std::nullopt;
};

// Authentication Header (RFC 4302). Unlike the other extension headers its
// Payload Len counts 4-byte words minus 2, which is the point of testing it.
// The header is 12 + icv.size() bytes; icv.size() must be a multiple of 4
// (IPv6 additionally expects the total to be a multiple of 8).
struct Ipv6Authentication {
  uint32_t spi = 0x100;
  uint32_t sequence = 1;
  std::vector<uint8_t> icv = std::vector<uint8_t>(12, 0);  // HMAC-*-96 size.
  std::optional<uint8_t> next_header = std::nullopt;
};

// Any other (or deliberately malformed) extension header: `type` is announced
// by the previous header, and `body` is written verbatim after this header's
// Next Header byte, so it starts with the length byte.
struct Ipv6RawExtension {
  uint8_t type = 0;
  std::vector<uint8_t> body = {0, 0, 0, 0, 0, 0, 0};
  std::optional<uint8_t> next_header = std::nullopt;
};

using Ipv6ExtensionHeader =
    std::variant<Ipv6HopByHop, Ipv6Routing, Ipv6Fragment,
                 Ipv6DestinationOptions, Ipv6Authentication, Ipv6RawExtension>;

struct Ipv6Options {
  Ipv6Address src = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
  Ipv6Address dst = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02};
  uint8_t traffic_class = 0;
  uint32_t flow_label = 0;  // 20 bits.
  uint8_t hop_limit = 64;
  // In wire order, directly after the fixed header.
  std::vector<Ipv6ExtensionHeader> extension_headers = {};
  // Overrides. next_header is the upper-layer protocol: it lands in the last
  // extension header, or in the fixed header when there are none. Without it
  // the protocol is derived from the next layer (IPPROTO_NONE if none).
  std::optional<uint16_t> payload_length = std::nullopt;
  std::optional<uint8_t> next_header = std::nullopt;
};

struct TcpOptions {
  uint16_t sport = 40000;
  uint16_t dport = 80;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t flags = 0;  // kTcp* bits.
  uint16_t window = 65535;
  uint16_t urgent_pointer = 0;
  // Raw option bytes, zero-padded (End of Option List) to a multiple of 4.
  std::vector<uint8_t> options = {};
  // In 4-byte words; derived from the header length unless set.
  std::optional<uint8_t> data_offset = std::nullopt;
  std::optional<uint16_t> checksum = std::nullopt;
  bool bad_checksum = false;
};

struct UdpOptions {
  uint16_t sport = 40000;
  uint16_t dport = 53;
  std::optional<uint16_t> length = std::nullopt;
  std::optional<uint16_t> checksum = std::nullopt;
  bool bad_checksum = false;
};

// ICMPv4 and ICMPv6 messages both start with type, code, checksum and a
// 32-bit word whose meaning depends on the type (echo id/sequence, MTU,
// pointer, ND flags); see IcmpEcho() and IcmpWord().
struct Icmpv4Options {
  uint8_t type = 8;  // ICMP_ECHO.
  uint8_t code = 0;
  std::array<uint8_t, 4> rest_of_header = {};
  std::optional<uint16_t> checksum = std::nullopt;
  bool bad_checksum = false;
};

struct Icmpv6Options {
  uint8_t type = 128;  // ICMP6_ECHO_REQUEST.
  uint8_t code = 0;
  std::array<uint8_t, 4> rest_of_header = {};
  // Message bytes after the first 32-bit word (e.g. an ND target and options).
  std::vector<uint8_t> body = {};
  std::optional<uint16_t> checksum = std::nullopt;
  bool bad_checksum = false;
};

// The rest-of-header word of an echo request/reply.
std::array<uint8_t, 4> IcmpEcho(uint16_t id, uint16_t sequence);
// `value` as a big-endian 32-bit rest-of-header word: the MTU of ICMPv4
// "fragmentation needed" (low 16 bits) or ICMPv6 "packet too big", or the
// ICMPv6 parameter-problem pointer.
std::array<uint8_t, 4> IcmpWord(uint32_t value);

// Neighbour Discovery (RFC 4861). Real ND packets need hop limit 255 in the
// IPv6 header; the builder leaves that to the test.
// `options`: further raw ND options, appended as given after the link-layer
// address option (e.g. a second one, or a malformed one).
struct RouterSolicitationOptions {
  std::optional<MacAddress> source_link_layer = std::nullopt;
  std::vector<uint8_t> options = {};
  uint8_t code = 0;
};

struct NeighborSolicitationOptions {
  Ipv6Address target = {};
  std::optional<MacAddress> source_link_layer = std::nullopt;
  std::vector<uint8_t> options = {};
  uint8_t code = 0;
};

struct NeighborAdvertisementOptions {
  Ipv6Address target = {};
  bool router_flag = false;
  bool solicited_flag = true;
  bool override_flag = true;
  std::optional<MacAddress> target_link_layer = std::nullopt;
  std::vector<uint8_t> options = {};
};

// A link-layer address option (RFC 4861 4.6.1) for Ethernet: type 1 (source)
// or 2 (target), length 1.
std::vector<uint8_t> LinkLayerOption(uint8_t type, const MacAddress& mac);

struct RouterAdvertisementOptions {
  uint8_t cur_hop_limit = 64;
  bool managed_flag = false;
  bool other_flag = false;
  uint16_t router_lifetime = 1800;  // Seconds.
  uint32_t reachable_time = 0;      // Milliseconds.
  uint32_t retrans_timer = 0;       // Milliseconds.
  std::optional<MacAddress> source_link_layer = std::nullopt;
  // Further raw ND options (e.g. prefix information), appended as given.
  std::vector<uint8_t> options = {};
};

// GRE (RFC 2784/2890). The optional fields matter because a parser must skip
// them to find the inner packet.
struct GreOptions {
  bool with_checksum = false;
  std::optional<uint32_t> key = std::nullopt;
  std::optional<uint32_t> sequence = std::nullopt;
  // Derived from the next layer (IPv4, IPv6, or Ethernet as transparent
  // Ethernet bridging) unless set.
  std::optional<uint16_t> protocol = std::nullopt;
};

struct VxlanOptions {
  uint32_t vni = 1;  // 24 bits.
  uint16_t udp_sport = 49152;
  uint16_t udp_dport = kVxlanUdpPort;
};

namespace packet_builder_internal {

struct RawPayload {
  std::vector<uint8_t> bytes;
};
// The VXLAN header itself; its UDP header is a separate UdpOptions layer.
struct VxlanHeader {
  uint32_t vni;
};

using Layer =
    std::variant<EthernetOptions, VlanOptions, ArpOptions, Ipv4Options,
                 Ipv6Options, TcpOptions, UdpOptions, Icmpv4Options,
                 Icmpv6Options, GreOptions, VxlanHeader, RawPayload>;

}  // namespace packet_builder_internal

class PacketBuilder {
 public:
  static constexpr size_t kWholePacket = std::numeric_limits<size_t>::max();

  // Layers, appended outermost first.
  PacketBuilder& Ethernet(const EthernetOptions& options = {});
  PacketBuilder& Vlan(const VlanOptions& options = {});
  PacketBuilder& Arp(const ArpOptions& options = {});
  PacketBuilder& Ipv4(const Ipv4Options& options = {});
  PacketBuilder& Ipv6(const Ipv6Options& options = {});
  PacketBuilder& Tcp(const TcpOptions& options = {});
  PacketBuilder& Udp(const UdpOptions& options = {});
  PacketBuilder& Icmpv4(const Icmpv4Options& options = {});
  PacketBuilder& Icmpv6(const Icmpv6Options& options = {});
  PacketBuilder& RouterSolicitation(
      const RouterSolicitationOptions& options = {});
  PacketBuilder& NeighborSolicitation(
      const NeighborSolicitationOptions& options);
  PacketBuilder& NeighborAdvertisement(
      const NeighborAdvertisementOptions& options);
  PacketBuilder& RouterAdvertisement(
      const RouterAdvertisementOptions& options = {});
  // ICMP errors quoting `quoted` from its first layer after Ethernet/VLAN
  // (its IP header) onward, cut to `max_quoted_bytes`.
  PacketBuilder& Icmpv4Error(const Icmpv4Options& icmp,
                             const PacketBuilder& quoted,
                             size_t max_quoted_bytes = kWholePacket);
  PacketBuilder& Icmpv6Error(const Icmpv6Options& icmp,
                             const PacketBuilder& quoted,
                             size_t max_quoted_bytes = kWholePacket);
  // Follow with the encapsulated layers (e.g. .Gre().Ipv4()...). IP-in-IP
  // needs no method: an IP layer followed by another gets protocol 4 (IPv4
  // inside) or 41 (IPv6 inside).
  PacketBuilder& Gre(const GreOptions& options = {});
  // Appends a UDP header to the VXLAN port and the VXLAN header; follow with
  // the inner .Ethernet().
  PacketBuilder& Vxlan(const VxlanOptions& options = {});
  PacketBuilder& Payload(std::vector<uint8_t> bytes);
  // Appends all layers of `inner` (not its truncation), e.g. to encapsulate a
  // packet built elsewhere.
  PacketBuilder& Append(const PacketBuilder& inner);

  // Cuts every frame built from here on to at most `length` bytes. Lengths
  // and checksums still describe the untruncated packet, as on a real
  // capture with a short snaplen.
  PacketBuilder& Truncate(size_t length);

  // The whole frame.
  std::vector<uint8_t> Build() const;
  // The packet from the first layer after Ethernet/VLAN onward.
  std::vector<uint8_t> BuildFromNetworkLayer() const;
  // Fragments the outermost IP datagram into frames carrying at most
  // `fragment_payload_size` bytes of it each (a multiple of 8), in order;
  // tests reorder them as they like. Layers before the IP header are repeated
  // in every frame.
  //   IPv4: each fragment copies the header (options included) with
  //   fragment_offset and more_fragments adjusted; an already set
  //   fragment_offset/more_fragments is honoured, so fragmenting a fragment
  //   works.
  //   IPv6: a fragment header with `ipv6_identification` is inserted after
  //   the last hop-by-hop or routing header (the unfragmentable part); the
  //   remaining extension headers are fragmented with the upper layers. The
  //   datagram must not already contain a fragment header.
  std::vector<std::vector<uint8_t>> BuildFragments(
      size_t fragment_payload_size, uint32_t ipv6_identification = 1) const;

 private:
  using Layer = packet_builder_internal::Layer;

  PacketBuilder& Add(Layer layer);
  std::vector<uint8_t> Truncated(std::vector<uint8_t> frame) const;
  size_t FirstNetworkLayerIndex() const;

  std::vector<Layer> layers_;
  std::optional<size_t> truncate_to_;
};

}  // namespace stockade::testing

#endif  // STOCKADE_TESTLIB_PACKET_BUILDER_H_

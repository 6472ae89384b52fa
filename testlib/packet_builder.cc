#include "testlib/packet_builder.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>

namespace stockade::testing {
namespace {

using Bytes = std::vector<uint8_t>;
using packet_builder_internal::Layer;
using packet_builder_internal::RawPayload;
using packet_builder_internal::VxlanHeader;

constexpr size_t kIpv4HeaderLength = 20;
constexpr size_t kIpv4MaxOptionsLength = 40;  // ihl is 4 bits: 60 bytes.
constexpr size_t kTcpHeaderLength = 20;

// Builder misuse is a bug in the test, so it aborts loudly rather than
// producing a frame that silently tests something else.
[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "PacketBuilder: %s\n", message.c_str());
  std::abort();
}

void Put8(Bytes& out, uint8_t value) { out.push_back(value); }

void Put16(Bytes& out, uint16_t value) {
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value));
}

void Put32(Bytes& out, uint32_t value) {
  Put16(out, static_cast<uint16_t>(value >> 16));
  Put16(out, static_cast<uint16_t>(value));
}

void PutBytes(Bytes& out, std::span<const uint8_t> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

void Store16(Bytes& out, size_t offset, uint16_t value) {
  out[offset] = static_cast<uint8_t>(value >> 8);
  out[offset + 1] = static_cast<uint8_t>(value);
}

size_t RoundUp(size_t value, size_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

uint16_t InternetChecksum(std::span<const uint8_t> data, uint16_t initial = 0) {
  return static_cast<uint16_t>(~OnesComplementSum(data, initial));
}

// The value to write into a checksum field.
uint16_t ChecksumField(uint16_t correct, std::optional<uint16_t> explicit_value,
                       bool bad) {
  if (explicit_value.has_value()) return *explicit_value;
  // A fixed wrong value rather than a perturbed right one: it can never be
  // the correct value, its ones'-complement twin (0x0000 vs 0xffff), or UDP's
  // "no checksum" zero.
  if (bad) return correct == 0xdead ? 0xbeef : 0xdead;
  return correct;
}

// Sum of the pseudo-header that TCP, UDP and ICMPv6 checksums cover, taken
// from the nearest IP layer before `index`, or 0 if there is none. For IPv6
// this uses the header's dst even with a routing header, where RFC 8200
// would use the final destination; no test needs that case yet.
uint16_t PseudoHeaderSum(std::span<const Layer> layers, size_t index,
                         uint8_t protocol, size_t l4_length) {
  for (size_t i = index; i-- > 0;) {
    Bytes pseudo_header;
    if (const auto* ipv4 = std::get_if<Ipv4Options>(&layers[i])) {
      PutBytes(pseudo_header, ipv4->src);
      PutBytes(pseudo_header, ipv4->dst);
      Put8(pseudo_header, 0);
      Put8(pseudo_header, protocol);
      Put16(pseudo_header, static_cast<uint16_t>(l4_length));
      return OnesComplementSum(pseudo_header);
    }
    if (const auto* ipv6 = std::get_if<Ipv6Options>(&layers[i])) {
      PutBytes(pseudo_header, ipv6->src);
      PutBytes(pseudo_header, ipv6->dst);
      Put32(pseudo_header, static_cast<uint32_t>(l4_length));
      PutBytes(pseudo_header, std::array<uint8_t, 3>{});
      Put8(pseudo_header, protocol);
      return OnesComplementSum(pseudo_header);
    }
  }
  return 0;
}

const Layer* LayerAfter(std::span<const Layer> layers, size_t index) {
  return index + 1 < layers.size() ? &layers[index + 1] : nullptr;
}

// The ethertype that announces the layer after `index`.
uint16_t EthertypeAfter(std::span<const Layer> layers, size_t index,
                        std::optional<uint16_t> explicit_type,
                        const std::string& layer_name) {
  if (explicit_type.has_value()) return *explicit_type;
  if (const Layer* next = LayerAfter(layers, index)) {
    if (const auto* vlan = std::get_if<VlanOptions>(next)) return vlan->tpid;
    if (std::holds_alternative<Ipv4Options>(*next)) return ETH_P_IP;
    if (std::holds_alternative<Ipv6Options>(*next)) return ETH_P_IPV6;
    if (std::holds_alternative<ArpOptions>(*next)) return ETH_P_ARP;
  }
  Fail(layer_name + ": cannot derive an ethertype for the next layer; set it");
}

// The IP protocol number that announces the layer after `index`.
uint8_t IpProtocolAfter(std::span<const Layer> layers, size_t index,
                        std::optional<uint8_t> explicit_protocol) {
  if (explicit_protocol.has_value()) return *explicit_protocol;
  const Layer* next = LayerAfter(layers, index);
  if (next == nullptr) return IPPROTO_NONE;
  if (std::holds_alternative<TcpOptions>(*next)) return IPPROTO_TCP;
  if (std::holds_alternative<UdpOptions>(*next)) return IPPROTO_UDP;
  if (std::holds_alternative<Icmpv4Options>(*next)) return IPPROTO_ICMP;
  if (std::holds_alternative<Icmpv6Options>(*next)) return IPPROTO_ICMPV6;
  if (std::holds_alternative<GreOptions>(*next)) return IPPROTO_GRE;
  if (std::holds_alternative<Ipv4Options>(*next)) return IPPROTO_IPIP;
  if (std::holds_alternative<Ipv6Options>(*next)) return IPPROTO_IPV6;
  Fail("IP: cannot derive a protocol number for the next layer; set it");
}

uint8_t ExtensionType(const Ipv6HopByHop&) { return IPPROTO_HOPOPTS; }
uint8_t ExtensionType(const Ipv6Routing&) { return IPPROTO_ROUTING; }
uint8_t ExtensionType(const Ipv6Fragment&) { return IPPROTO_FRAGMENT; }
uint8_t ExtensionType(const Ipv6DestinationOptions&) { return IPPROTO_DSTOPTS; }
uint8_t ExtensionType(const Ipv6Authentication&) { return IPPROTO_AH; }
uint8_t ExtensionType(const Ipv6RawExtension& raw) { return raw.type; }

// Hop-by-hop and destination options headers: TLVs padded to 8n bytes.
Bytes EncodeOptionsHeader(std::span<const uint8_t> options,
                          uint8_t next_header) {
  Bytes out = {next_header, 0};
  PutBytes(out, options);
  const size_t padding = RoundUp(out.size(), 8) - out.size();
  if (padding == 1) {
    Put8(out, 0);  // Pad1.
  } else if (padding > 1) {
    Put8(out, 1);  // PadN, whose length excludes its own 2 bytes.
    Put8(out, static_cast<uint8_t>(padding - 2));
    out.resize(out.size() + padding - 2, 0);
  }
  out[1] = static_cast<uint8_t>(out.size() / 8 - 1);
  return out;
}

Bytes EncodeExtension(const Ipv6HopByHop& header, uint8_t next_header) {
  return EncodeOptionsHeader(header.options,
                             header.next_header.value_or(next_header));
}

Bytes EncodeExtension(const Ipv6DestinationOptions& header,
                      uint8_t next_header) {
  return EncodeOptionsHeader(header.options,
                             header.next_header.value_or(next_header));
}

Bytes EncodeExtension(const Ipv6Routing& header, uint8_t next_header) {
  Bytes out = {header.next_header.value_or(next_header), 0, header.routing_type,
               header.segments_left};
  PutBytes(out, header.data);
  for (const Ipv6Address& address : header.addresses) PutBytes(out, address);
  out.resize(RoundUp(out.size(), 8), 0);
  out[1] = static_cast<uint8_t>(out.size() / 8 - 1);
  return out;
}

Bytes EncodeExtension(const Ipv6Fragment& header, uint8_t next_header) {
  Bytes out = {header.next_header.value_or(next_header), 0};
  Put16(out, static_cast<uint16_t>((header.offset << 3) |
                                   (header.more_fragments ? 1 : 0)));
  Put32(out, header.identification);
  return out;
}

Bytes EncodeExtension(const Ipv6Authentication& header, uint8_t next_header) {
  if (header.icv.size() % 4 != 0) {
    Fail(
        "AH: the ICV must be a multiple of 4 bytes for Payload Len to "
        "describe it");
  }
  const size_t length = 12 + header.icv.size();
  Bytes out = {header.next_header.value_or(next_header),
               static_cast<uint8_t>(length / 4 - 2), 0, 0};
  Put32(out, header.spi);
  Put32(out, header.sequence);
  PutBytes(out, header.icv);
  return out;
}

Bytes EncodeExtension(const Ipv6RawExtension& header, uint8_t next_header) {
  Bytes out = {header.next_header.value_or(next_header)};
  PutBytes(out, header.body);
  return out;
}

struct ExtensionChain {
  uint8_t first_type;  // What the header in front of the chain announces.
  Bytes bytes;         // The chain followed by its payload.
};

// Encodes back to front, because each header announces the type of the one
// after it.
ExtensionChain EncodeExtensionChain(
    std::span<const Ipv6ExtensionHeader> headers, uint8_t upper_protocol,
    std::span<const uint8_t> payload) {
  ExtensionChain chain = {upper_protocol,
                          Bytes(payload.begin(), payload.end())};
  for (auto it = headers.rbegin(); it != headers.rend(); ++it) {
    Bytes bytes = std::visit(
        [&](const auto& header) {
          return EncodeExtension(header, chain.first_type);
        },
        *it);
    PutBytes(bytes, chain.bytes);
    chain.bytes = std::move(bytes);
    chain.first_type = std::visit(
        [](const auto& header) { return ExtensionType(header); }, *it);
  }
  return chain;
}

// Encodes one layer in front of the already encoded layers after it.
class LayerEncoder {
 public:
  LayerEncoder(std::span<const Layer> layers, size_t index,
               std::span<const uint8_t> payload)
      : layers_(layers), index_(index), payload_(payload) {}

  Bytes operator()(const EthernetOptions& ethernet) const {
    Bytes out;
    PutBytes(out, ethernet.dst);
    PutBytes(out, ethernet.src);
    Put16(out, EthertypeAfter(layers_, index_, ethernet.ethertype, "Ethernet"));
    return WithPayload(std::move(out));
  }

  Bytes operator()(const VlanOptions& vlan) const {
    Bytes out;
    Put16(out,
          static_cast<uint16_t>((vlan.pcp & 0x7) << 13 |
                                (vlan.dei ? 1 : 0) << 12 | (vlan.vid & 0xfff)));
    Put16(out, EthertypeAfter(layers_, index_, vlan.ethertype, "VLAN"));
    return WithPayload(std::move(out));
  }

  Bytes operator()(const ArpOptions& arp) const {
    Bytes out;
    Put16(out, ARPHRD_ETHER);
    Put16(out, ETH_P_IP);
    Put8(out, ETH_ALEN);
    Put8(out, sizeof(Ipv4Address));
    Put16(out, arp.op);
    PutBytes(out, arp.sender_mac);
    PutBytes(out, arp.sender_ip);
    PutBytes(out, arp.target_mac);
    PutBytes(out, arp.target_ip);
    return WithPayload(std::move(out));
  }

  Bytes operator()(const Ipv4Options& ip) const {
    if (ip.options.size() > kIpv4MaxOptionsLength) {
      Fail("IPv4: options longer than 40 bytes do not fit in ihl");
    }
    Bytes options = ip.options;
    options.resize(RoundUp(options.size(), 4), 0);
    const size_t header_length = kIpv4HeaderLength + options.size();
    const uint8_t ihl = ip.ihl.value_or(header_length / 4);
    Bytes out;
    Put8(out, static_cast<uint8_t>(0x40 | (ihl & 0xf)));
    Put8(out, ip.tos);
    Put16(out, ip.total_length.value_or(
                   static_cast<uint16_t>(header_length + payload_.size())));
    Put16(out, ip.id);
    Put16(out, static_cast<uint16_t>((ip.dont_fragment ? IP_DF : 0) |
                                     (ip.more_fragments ? IP_MF : 0) |
                                     (ip.fragment_offset & IP_OFFMASK)));
    Put8(out, ip.ttl);
    Put8(out, IpProtocolAfter(layers_, index_, ip.protocol));
    Put16(out, 0);  // Checksum, filled in below.
    PutBytes(out, ip.src);
    PutBytes(out, ip.dst);
    PutBytes(out, options);
    Store16(out, 10,
            ChecksumField(InternetChecksum(out), ip.checksum, ip.bad_checksum));
    return WithPayload(std::move(out));
  }

  Bytes operator()(const Ipv6Options& ip) const {
    const ExtensionChain chain = EncodeExtensionChain(
        ip.extension_headers, IpProtocolAfter(layers_, index_, ip.next_header),
        payload_);
    Bytes out;
    Put32(out, 6u << 28 | static_cast<uint32_t>(ip.traffic_class) << 20 |
                   (ip.flow_label & 0xfffff));
    Put16(out, ip.payload_length.value_or(
                   static_cast<uint16_t>(chain.bytes.size())));
    Put8(out, chain.first_type);
    Put8(out, ip.hop_limit);
    PutBytes(out, ip.src);
    PutBytes(out, ip.dst);
    PutBytes(out, chain.bytes);
    return out;
  }

  Bytes operator()(const TcpOptions& tcp) const {
    Bytes options = tcp.options;
    options.resize(RoundUp(options.size(), 4), 0);
    const size_t header_length = kTcpHeaderLength + options.size();
    Bytes out;
    Put16(out, tcp.sport);
    Put16(out, tcp.dport);
    Put32(out, tcp.seq);
    Put32(out, tcp.ack);
    Put8(out, static_cast<uint8_t>(tcp.data_offset.value_or(header_length / 4)
                                   << 4));
    Put8(out, tcp.flags);
    Put16(out, tcp.window);
    Put16(out, 0);  // Checksum, filled in below.
    Put16(out, tcp.urgent_pointer);
    PutBytes(out, options);
    PutBytes(out, payload_);
    Store16(out, 16,
            ChecksumField(L4Checksum(IPPROTO_TCP, out), tcp.checksum,
                          tcp.bad_checksum));
    return out;
  }

  Bytes operator()(const UdpOptions& udp) const {
    Bytes out;
    Put16(out, udp.sport);
    Put16(out, udp.dport);
    Put16(out, udp.length.value_or(static_cast<uint16_t>(8 + payload_.size())));
    Put16(out, 0);  // Checksum, filled in below.
    PutBytes(out, payload_);
    uint16_t checksum = L4Checksum(IPPROTO_UDP, out);
    // Zero means "no checksum" (RFC 768), so a computed zero is sent as its
    // ones'-complement twin.
    if (checksum == 0) checksum = 0xffff;
    Store16(out, 6, ChecksumField(checksum, udp.checksum, udp.bad_checksum));
    return out;
  }

  Bytes operator()(const Icmpv4Options& icmp) const {
    Bytes out = {icmp.type, icmp.code, 0, 0};
    PutBytes(out, icmp.rest_of_header);
    PutBytes(out, payload_);
    // Unlike ICMPv6, ICMPv4 has no pseudo-header.
    Store16(
        out, 2,
        ChecksumField(InternetChecksum(out), icmp.checksum, icmp.bad_checksum));
    return out;
  }

  Bytes operator()(const Icmpv6Options& icmp) const {
    Bytes out = {icmp.type, icmp.code, 0, 0};
    PutBytes(out, icmp.rest_of_header);
    PutBytes(out, icmp.body);
    PutBytes(out, payload_);
    Store16(out, 2,
            ChecksumField(L4Checksum(IPPROTO_ICMPV6, out), icmp.checksum,
                          icmp.bad_checksum));
    return out;
  }

  Bytes operator()(const GreOptions& gre) const {
    Bytes out;
    Put16(out, static_cast<uint16_t>((gre.with_checksum ? 0x8000 : 0) |
                                     (gre.key.has_value() ? 0x2000 : 0) |
                                     (gre.sequence.has_value() ? 0x1000 : 0)));
    Put16(out, GreProtocol(gre));
    if (gre.with_checksum) Put32(out, 0);  // Checksum and Reserved1.
    if (gre.key.has_value()) Put32(out, *gre.key);
    if (gre.sequence.has_value()) Put32(out, *gre.sequence);
    PutBytes(out, payload_);
    if (gre.with_checksum) Store16(out, 4, InternetChecksum(out));
    return out;
  }

  Bytes operator()(const VxlanHeader& vxlan) const {
    Bytes out = {0x08, 0, 0, 0};  // Flags: only I, "VNI is valid".
    Put32(out, vxlan.vni << 8);
    return WithPayload(std::move(out));
  }

  Bytes operator()(const RawPayload& raw) const {
    return WithPayload(raw.bytes);
  }

 private:
  Bytes WithPayload(Bytes header) const {
    PutBytes(header, payload_);
    return header;
  }

  // Like EthertypeAfter, plus transparent Ethernet bridging: GRE's protocol
  // type for an Ethernet payload, which has no ethertype of its own.
  uint16_t GreProtocol(const GreOptions& gre) const {
    const Layer* next = LayerAfter(layers_, index_);
    if (!gre.protocol.has_value() && next != nullptr &&
        std::holds_alternative<EthernetOptions>(*next)) {
      return ETH_P_TEB;
    }
    return EthertypeAfter(layers_, index_, gre.protocol, "GRE");
  }

  // `segment` is the whole L4 message with a zero checksum field.
  uint16_t L4Checksum(uint8_t protocol,
                      std::span<const uint8_t> segment) const {
    return InternetChecksum(
        segment, PseudoHeaderSum(layers_, index_, protocol, segment.size()));
  }

  std::span<const Layer> layers_;
  size_t index_;
  std::span<const uint8_t> payload_;
};

// Encodes layers [first, end) innermost first, since outer headers carry the
// lengths and checksums of what they enclose.
Bytes EncodeLayers(std::span<const Layer> layers, size_t first) {
  Bytes bytes;
  for (size_t i = layers.size(); i-- > first;) {
    bytes = std::visit(LayerEncoder(layers, i, bytes), layers[i]);
  }
  return bytes;
}

void PutLinkLayerOption(Bytes& out, uint8_t type, const MacAddress& mac) {
  Put8(out, type);
  Put8(out, 1);  // Length in units of 8 bytes.
  PutBytes(out, mac);
}

bool IsPerHopExtension(const Ipv6ExtensionHeader& header) {
  return std::holds_alternative<Ipv6HopByHop>(header) ||
         std::holds_alternative<Ipv6Routing>(header);
}

int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

template <typename Address>
Address ParseIp(int family, std::string_view text, const char* what) {
  const std::string nul_terminated(text);
  Address address;
  if (inet_pton(family, nul_terminated.c_str(), address.data()) != 1) {
    Fail(std::string("bad ") + what + " address '" + nul_terminated + "'");
  }
  return address;
}

}  // namespace

MacAddress Mac(std::string_view text) {
  // inet_pton has no MAC family and ether_aton accepts one-digit octets, so
  // only the canonical xx:xx:xx:xx:xx:xx form is accepted.
  MacAddress mac;
  bool valid = text.size() == 17;
  for (size_t i = 0; valid && i < mac.size(); ++i) {
    const int high = HexDigitValue(text[3 * i]);
    const int low = HexDigitValue(text[3 * i + 1]);
    valid = high >= 0 && low >= 0 && (i == 5 || text[3 * i + 2] == ':');
    mac[i] = static_cast<uint8_t>(high << 4 | low);
  }
  if (!valid) Fail("bad MAC address '" + std::string(text) + "'");
  return mac;
}

Ipv4Address Ipv4(std::string_view text) {
  return ParseIp<Ipv4Address>(AF_INET, text, "IPv4");
}

uint32_t Ipv4NetworkOrder(std::string_view text) {
  const Ipv4Address address = Ipv4(text);
  uint32_t value;
  std::memcpy(&value, address.data(), sizeof(value));
  return value;
}

Ipv6Address Ipv6(std::string_view text) {
  return ParseIp<Ipv6Address>(AF_INET6, text, "IPv6");
}

uint16_t OnesComplementSum(std::span<const uint8_t> data, uint16_t initial) {
  uint64_t sum = initial;
  for (size_t i = 0; i + 1 < data.size(); i += 2) {
    sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  }
  if (data.size() % 2 != 0) sum += static_cast<uint32_t>(data.back() << 8);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

std::vector<uint8_t> LinkLayerOption(uint8_t type, const MacAddress& mac) {
  Bytes out;
  PutLinkLayerOption(out, type, mac);
  return out;
}

std::array<uint8_t, 4> IcmpEcho(uint16_t id, uint16_t sequence) {
  return {static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id),
          static_cast<uint8_t>(sequence >> 8), static_cast<uint8_t>(sequence)};
}

std::array<uint8_t, 4> IcmpWord(uint32_t value) {
  return {static_cast<uint8_t>(value >> 24), static_cast<uint8_t>(value >> 16),
          static_cast<uint8_t>(value >> 8), static_cast<uint8_t>(value)};
}

PacketBuilder& PacketBuilder::Add(Layer layer) {
  layers_.push_back(std::move(layer));
  return *this;
}

PacketBuilder& PacketBuilder::Ethernet(const EthernetOptions& options) {
  return Add(options);
}

PacketBuilder& PacketBuilder::Vlan(const VlanOptions& options) {
  return Add(options);
}

PacketBuilder& PacketBuilder::Arp(const ArpOptions& options) {
  return Add(options);
}

PacketBuilder& PacketBuilder::Ipv4(const Ipv4Options& options) {
  return Add(options);
}

PacketBuilder& PacketBuilder::Ipv6(const Ipv6Options& options) {
  return Add(options);
}

PacketBuilder& PacketBuilder::Tcp(const TcpOptions& options) {
  return Add(options);
}

PacketBuilder& PacketBuilder::Udp(const UdpOptions& options) {
  return Add(options);
}

PacketBuilder& PacketBuilder::Icmpv4(const Icmpv4Options& options) {
  return Add(options);
}

PacketBuilder& PacketBuilder::Icmpv6(const Icmpv6Options& options) {
  return Add(options);
}

PacketBuilder& PacketBuilder::RouterSolicitation(
    const RouterSolicitationOptions& options) {
  // The body starts with the options: the reserved word is rest_of_header.
  Icmpv6Options icmp = {.type = ND_ROUTER_SOLICIT, .code = options.code};
  if (options.source_link_layer.has_value()) {
    PutLinkLayerOption(icmp.body, ND_OPT_SOURCE_LINKADDR,
                       *options.source_link_layer);
  }
  PutBytes(icmp.body, options.options);
  return Icmpv6(icmp);
}

PacketBuilder& PacketBuilder::NeighborSolicitation(
    const NeighborSolicitationOptions& options) {
  Icmpv6Options icmp = {.type = ND_NEIGHBOR_SOLICIT, .code = options.code};
  PutBytes(icmp.body, options.target);
  if (options.source_link_layer.has_value()) {
    PutLinkLayerOption(icmp.body, ND_OPT_SOURCE_LINKADDR,
                       *options.source_link_layer);
  }
  PutBytes(icmp.body, options.options);
  return Icmpv6(icmp);
}

PacketBuilder& PacketBuilder::NeighborAdvertisement(
    const NeighborAdvertisementOptions& options) {
  Icmpv6Options icmp = {.type = ND_NEIGHBOR_ADVERT};
  // The R, S and O flags are the top bits of the first byte. glibc's
  // ND_NA_FLAG_* are 32-bit values in host order, hence the literals.
  icmp.rest_of_header[0] = static_cast<uint8_t>(
      (options.router_flag ? 0x80 : 0) | (options.solicited_flag ? 0x40 : 0) |
      (options.override_flag ? 0x20 : 0));
  PutBytes(icmp.body, options.target);
  if (options.target_link_layer.has_value()) {
    PutLinkLayerOption(icmp.body, ND_OPT_TARGET_LINKADDR,
                       *options.target_link_layer);
  }
  PutBytes(icmp.body, options.options);
  return Icmpv6(icmp);
}

PacketBuilder& PacketBuilder::RouterAdvertisement(
    const RouterAdvertisementOptions& options) {
  Icmpv6Options icmp = {
      .type = ND_ROUTER_ADVERT,
      .rest_of_header = {
          options.cur_hop_limit,
          static_cast<uint8_t>((options.managed_flag ? ND_RA_FLAG_MANAGED : 0) |
                               (options.other_flag ? ND_RA_FLAG_OTHER : 0)),
          static_cast<uint8_t>(options.router_lifetime >> 8),
          static_cast<uint8_t>(options.router_lifetime)}};
  Put32(icmp.body, options.reachable_time);
  Put32(icmp.body, options.retrans_timer);
  if (options.source_link_layer.has_value()) {
    PutLinkLayerOption(icmp.body, ND_OPT_SOURCE_LINKADDR,
                       *options.source_link_layer);
  }
  PutBytes(icmp.body, options.options);
  return Icmpv6(icmp);
}

PacketBuilder& PacketBuilder::Icmpv4Error(const Icmpv4Options& icmp,
                                          const PacketBuilder& quoted,
                                          size_t max_quoted_bytes) {
  Bytes quote = quoted.BuildFromNetworkLayer();
  quote.resize(std::min(quote.size(), max_quoted_bytes));
  return Icmpv4(icmp).Payload(std::move(quote));
}

PacketBuilder& PacketBuilder::Icmpv6Error(const Icmpv6Options& icmp,
                                          const PacketBuilder& quoted,
                                          size_t max_quoted_bytes) {
  Bytes quote = quoted.BuildFromNetworkLayer();
  quote.resize(std::min(quote.size(), max_quoted_bytes));
  return Icmpv6(icmp).Payload(std::move(quote));
}

PacketBuilder& PacketBuilder::Gre(const GreOptions& options) {
  return Add(options);
}

PacketBuilder& PacketBuilder::Vxlan(const VxlanOptions& options) {
  Udp({.sport = options.udp_sport, .dport = options.udp_dport});
  return Add(VxlanHeader{.vni = options.vni & 0xffffff});
}

PacketBuilder& PacketBuilder::Payload(std::vector<uint8_t> bytes) {
  return Add(RawPayload{.bytes = std::move(bytes)});
}

PacketBuilder& PacketBuilder::Append(const PacketBuilder& inner) {
  // Copied first because `inner` may be *this.
  const std::vector<Layer> inner_layers = inner.layers_;
  layers_.insert(layers_.end(), inner_layers.begin(), inner_layers.end());
  return *this;
}

PacketBuilder& PacketBuilder::Truncate(size_t length) {
  truncate_to_ = length;
  return *this;
}

std::vector<uint8_t> PacketBuilder::Build() const {
  return Truncated(EncodeLayers(layers_, 0));
}

std::vector<uint8_t> PacketBuilder::BuildFromNetworkLayer() const {
  return Truncated(EncodeLayers(layers_, FirstNetworkLayerIndex()));
}

std::vector<std::vector<uint8_t>> PacketBuilder::BuildFragments(
    size_t fragment_payload_size, uint32_t ipv6_identification) const {
  if (fragment_payload_size == 0 || fragment_payload_size % 8 != 0) {
    Fail("fragment payload size " + std::to_string(fragment_payload_size) +
         " is not a positive multiple of 8");
  }
  const size_t ip_index = FirstNetworkLayerIndex();
  const Layer* ip_layer =
      ip_index < layers_.size() ? &layers_[ip_index] : nullptr;
  const Bytes upper_layers = EncodeLayers(layers_, ip_index + 1);

  // The bytes to split and how to make the IP header of the fragment at
  // `offset` (in 8-byte units).
  Bytes fragmentable;
  std::function<Layer(uint16_t offset, bool more_fragments)> fragment_header;
  if (const auto* ipv4 = std::get_if<Ipv4Options>(ip_layer)) {
    fragmentable = upper_layers;
    Ipv4Options header = *ipv4;
    header.protocol = IpProtocolAfter(layers_, ip_index, ipv4->protocol);
    fragment_header = [header](uint16_t offset, bool more_fragments) {
      Ipv4Options fragment = header;
      fragment.fragment_offset =
          static_cast<uint16_t>(fragment.fragment_offset + offset);
      fragment.more_fragments = fragment.more_fragments || more_fragments;
      return fragment;
    };
  } else if (const auto* ipv6 = std::get_if<Ipv6Options>(ip_layer)) {
    const std::vector<Ipv6ExtensionHeader>& headers = ipv6->extension_headers;
    if (std::any_of(headers.begin(), headers.end(), [](const auto& header) {
          return std::holds_alternative<Ipv6Fragment>(header);
        })) {
      Fail("IPv6 datagram to fragment already has a fragment header");
    }
    // Per-hop headers (RFC 8200 section 4.5) stay in front of the fragment
    // header; everything after the last of them is fragmented.
    const size_t unfragmentable_count =
        headers.rend() -
        std::find_if(headers.rbegin(), headers.rend(), IsPerHopExtension);
    const ExtensionChain fragmentable_chain = EncodeExtensionChain(
        std::span(headers).subspan(unfragmentable_count),
        IpProtocolAfter(layers_, ip_index, ipv6->next_header), upper_layers);
    fragmentable = fragmentable_chain.bytes;
    Ipv6Options header = *ipv6;
    header.extension_headers.resize(unfragmentable_count);
    header.extension_headers.push_back(
        Ipv6Fragment{.identification = ipv6_identification});
    header.next_header = fragmentable_chain.first_type;
    fragment_header = [header](uint16_t offset, bool more_fragments) {
      Ipv6Options fragment = header;
      auto& fragment_extension =
          std::get<Ipv6Fragment>(fragment.extension_headers.back());
      fragment_extension.offset = offset;
      fragment_extension.more_fragments = more_fragments;
      return fragment;
    };
  } else {
    Fail("BuildFragments: the first layer after Ethernet/VLAN is not IP");
  }
  if (fragmentable.empty()) Fail("BuildFragments: nothing to fragment");

  std::vector<std::vector<uint8_t>> frames;
  for (size_t offset = 0; offset < fragmentable.size();
       offset += fragment_payload_size) {
    const size_t chunk_size =
        std::min(fragment_payload_size, fragmentable.size() - offset);
    std::vector<Layer> frame_layers(layers_.begin(),
                                    layers_.begin() + ip_index);
    frame_layers.push_back(
        fragment_header(static_cast<uint16_t>(offset / 8),
                        offset + chunk_size < fragmentable.size()));
    frame_layers.push_back(
        RawPayload{.bytes = Bytes(fragmentable.begin() + offset,
                                  fragmentable.begin() + offset + chunk_size)});
    frames.push_back(Truncated(EncodeLayers(frame_layers, 0)));
  }
  return frames;
}

std::vector<uint8_t> PacketBuilder::Truncated(
    std::vector<uint8_t> frame) const {
  if (truncate_to_.has_value() && frame.size() > *truncate_to_) {
    frame.resize(*truncate_to_);
  }
  return frame;
}

size_t PacketBuilder::FirstNetworkLayerIndex() const {
  const auto it =
      std::find_if(layers_.begin(), layers_.end(), [](const Layer& layer) {
        return !std::holds_alternative<EthernetOptions>(layer) &&
               !std::holds_alternative<VlanOptions>(layer);
      });
  return static_cast<size_t>(it - layers_.begin());
}

}  // namespace stockade::testing

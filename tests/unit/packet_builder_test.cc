#include "testlib/packet_builder.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

namespace stockade::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using Bytes = std::vector<uint8_t>;

constexpr size_t kEthernetLength = 14;
constexpr size_t kVlanTagLength = 4;
constexpr size_t kIpv4Length = 20;
constexpr size_t kIpv6Length = 40;
constexpr size_t kUdpLength = 8;
constexpr size_t kTcpLength = 20;

constexpr uint8_t kProtocolIcmp = 1;
constexpr uint8_t kProtocolIpip = 4;
constexpr uint8_t kProtocolTcp = 6;
constexpr uint8_t kProtocolUdp = 17;
constexpr uint8_t kProtocolIpv6 = 41;
constexpr uint8_t kProtocolGre = 47;
constexpr uint8_t kProtocolIcmpv6 = 58;

uint16_t Read16(std::span<const uint8_t> bytes, size_t offset) {
  return static_cast<uint16_t>(bytes[offset] << 8 | bytes[offset + 1]);
}

uint32_t Read32(std::span<const uint8_t> bytes, size_t offset) {
  return static_cast<uint32_t>(Read16(bytes, offset)) << 16 |
         Read16(bytes, offset + 2);
}

Bytes Slice(std::span<const uint8_t> bytes, size_t offset, size_t length) {
  return Bytes(bytes.begin() + offset, bytes.begin() + offset + length);
}

Bytes Tail(std::span<const uint8_t> bytes, size_t offset) {
  return Bytes(bytes.begin() + offset, bytes.end());
}

// Bytes 0, 1, 2, ... so that misplaced chunks are visible.
Bytes CountingBytes(size_t length) {
  Bytes bytes(length);
  for (size_t i = 0; i < length; ++i) bytes[i] = static_cast<uint8_t>(i);
  return bytes;
}

// A second ones'-complement sum, written differently from the builder's, so
// that checksums are not verified by the code that produced them.
bool SumsToAllOnes(std::span<const uint8_t> data) {
  uint32_t sum = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    sum += i % 2 == 0 ? data[i] << 8 : data[i];
  }
  while (sum >> 16 != 0) sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff;
}

bool Ipv4HeaderChecksumIsValid(std::span<const uint8_t> frame,
                               size_t ip_offset) {
  const size_t header_length = (frame[ip_offset] & 0xf) * 4;
  return SumsToAllOnes(frame.subspan(ip_offset, header_length));
}

// Verifies the TCP/UDP checksum of the L4 message that ends the frame, using
// the pseudo-header of the IPv4 header at `ip_offset`.
bool Ipv4L4ChecksumIsValid(std::span<const uint8_t> frame, size_t ip_offset) {
  const size_t l4_offset = ip_offset + (frame[ip_offset] & 0xf) * 4;
  const size_t l4_length = frame.size() - l4_offset;
  Bytes data = Slice(frame, ip_offset + 12, 8);  // src, dst.
  data.insert(data.end(),
              {0, frame[ip_offset + 9], static_cast<uint8_t>(l4_length >> 8),
               static_cast<uint8_t>(l4_length)});
  data.insert(data.end(), frame.begin() + l4_offset, frame.end());
  return SumsToAllOnes(data);
}

// Same for the L4 message at `l4_offset` (after any extension headers) under
// the IPv6 header at `ip_offset`.
bool Ipv6L4ChecksumIsValid(std::span<const uint8_t> frame, size_t ip_offset,
                           size_t l4_offset, uint8_t protocol) {
  const size_t l4_length = frame.size() - l4_offset;
  Bytes data = Slice(frame, ip_offset + 8, 32);  // src, dst.
  data.insert(data.end(), {static_cast<uint8_t>(l4_length >> 24),
                           static_cast<uint8_t>(l4_length >> 16),
                           static_cast<uint8_t>(l4_length >> 8),
                           static_cast<uint8_t>(l4_length), 0, 0, 0, protocol});
  data.insert(data.end(), frame.begin() + l4_offset, frame.end());
  return SumsToAllOnes(data);
}

TEST(AddressParsingTest, ParsesCanonicalText) {
  EXPECT_THAT(Ipv4("10.0.0.1"), ElementsAre(10, 0, 0, 1));
  EXPECT_EQ(Ipv4NetworkOrder("10.0.0.1"), htonl(0x0a000001));
  EXPECT_THAT(Ipv6("fd00::1"),
              ElementsAre(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1));
  EXPECT_THAT(Mac("02:00:00:00:00:01"), ElementsAre(2, 0, 0, 0, 0, 1));
  EXPECT_THAT(Mac("AA:bb:0C:d0:e1:FF"),
              ElementsAre(0xaa, 0xbb, 0x0c, 0xd0, 0xe1, 0xff));
}

TEST(AddressParsingDeathTest, AbortsNamingTheBadText) {
  EXPECT_DEATH(Ipv4("10.0.0.256"), "10\\.0\\.0\\.256");
  EXPECT_DEATH(Ipv4("fd00::1"), "fd00::1");
  EXPECT_DEATH(Ipv6("fd00:::1"), "fd00:::1");
  EXPECT_DEATH(Mac("2:0:0:0:0:1"), "2:0:0:0:0:1");
  EXPECT_DEATH(Mac("02-00-00-00-00-01"), "02-00-00-00-00-01");
}

TEST(OnesComplementSumTest, MatchesRfc1071Example) {
  const Bytes data = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(OnesComplementSum(data), 0xddf2);
  // Chaining from an even-length prefix equals summing the whole.
  EXPECT_EQ(
      OnesComplementSum(Tail(data, 4), OnesComplementSum(Slice(data, 0, 4))),
      0xddf2);
  // An odd trailing byte counts as the high byte of a zero-padded word.
  EXPECT_EQ(OnesComplementSum(Bytes{0x12}), 0x1200);
}

TEST(PacketBuilderTest, EthernetIpv4TcpFieldsAndChecksums) {
  const Bytes frame = PacketBuilder()
                          .Ethernet({.src = Mac("02:00:00:00:00:0a"),
                                     .dst = Mac("02:00:00:00:00:0b")})
                          .Ipv4({.src = Ipv4("10.1.2.3"),
                                 .dst = Ipv4("10.4.5.6"),
                                 .tos = 0x10,
                                 .id = 0x1234,
                                 .dont_fragment = true,
                                 .ttl = 17})
                          .Tcp({.sport = 1234,
                                .dport = 443,
                                .seq = 0x01020304,
                                .ack = 0x0a0b0c0d,
                                .flags = kTcpSyn | kTcpAck,
                                .window = 0x7000})
                          .Payload({'h', 'i'})
                          .Build();

  ASSERT_EQ(frame.size(), kEthernetLength + kIpv4Length + kTcpLength + 2);
  EXPECT_THAT(Slice(frame, 0, 6), ElementsAreArray(Mac("02:00:00:00:00:0b")));
  EXPECT_THAT(Slice(frame, 6, 6), ElementsAreArray(Mac("02:00:00:00:00:0a")));
  EXPECT_EQ(Read16(frame, 12), 0x0800);

  const size_t ip = kEthernetLength;
  EXPECT_EQ(frame[ip], 0x45);
  EXPECT_EQ(frame[ip + 1], 0x10);
  EXPECT_EQ(Read16(frame, ip + 2), kIpv4Length + kTcpLength + 2);
  EXPECT_EQ(Read16(frame, ip + 4), 0x1234);
  EXPECT_EQ(Read16(frame, ip + 6), 0x4000);  // DF, offset 0.
  EXPECT_EQ(frame[ip + 8], 17);
  EXPECT_EQ(frame[ip + 9], kProtocolTcp);
  EXPECT_THAT(Slice(frame, ip + 12, 4), ElementsAre(10, 1, 2, 3));
  EXPECT_THAT(Slice(frame, ip + 16, 4), ElementsAre(10, 4, 5, 6));
  EXPECT_TRUE(Ipv4HeaderChecksumIsValid(frame, ip));

  const size_t tcp = ip + kIpv4Length;
  EXPECT_EQ(Read16(frame, tcp), 1234);
  EXPECT_EQ(Read16(frame, tcp + 2), 443);
  EXPECT_EQ(Read32(frame, tcp + 4), 0x01020304u);
  EXPECT_EQ(Read32(frame, tcp + 8), 0x0a0b0c0du);
  EXPECT_EQ(frame[tcp + 12], 5 << 4);
  EXPECT_EQ(frame[tcp + 13], 0x12);
  EXPECT_EQ(Read16(frame, tcp + 14), 0x7000);
  EXPECT_TRUE(Ipv4L4ChecksumIsValid(frame, ip));
  EXPECT_THAT(Tail(frame, tcp + kTcpLength), ElementsAre('h', 'i'));
}

TEST(PacketBuilderTest, Ipv4OptionsArePaddedAndGrowIhl) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Ipv4({.options = {0x94, 0x04, 0x00, 0x00, 0x01}})
                          .Udp()
                          .Build();
  const size_t ip = kEthernetLength;
  EXPECT_EQ(frame[ip], 0x47);  // 20 + 8 bytes of options.
  EXPECT_THAT(Slice(frame, ip + kIpv4Length, 8),
              ElementsAre(0x94, 0x04, 0, 0, 0x01, 0, 0, 0));
  EXPECT_EQ(Read16(frame, ip + 2), 28 + kUdpLength);
  EXPECT_TRUE(Ipv4HeaderChecksumIsValid(frame, ip));
  EXPECT_TRUE(Ipv4L4ChecksumIsValid(frame, ip));
}

TEST(PacketBuilderTest, Ipv4OverridesAreWrittenVerbatim) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Ipv4({.more_fragments = true,
                                 .fragment_offset = 185,
                                 .ihl = 4,
                                 .total_length = 1000,
                                 .protocol = 253,
                                 .checksum = 0xabcd})
                          .Payload({1, 2, 3})
                          .Build();
  const size_t ip = kEthernetLength;
  EXPECT_EQ(frame[ip], 0x44);
  EXPECT_EQ(Read16(frame, ip + 2), 1000);
  EXPECT_EQ(Read16(frame, ip + 6), 0x2000 | 185);
  EXPECT_EQ(frame[ip + 9], 253);
  EXPECT_EQ(Read16(frame, ip + 10), 0xabcd);
  EXPECT_EQ(frame.size(), kEthernetLength + kIpv4Length + 3);
}

TEST(PacketBuilderTest, BadChecksumsFailVerification) {
  const Bytes tcp_frame = PacketBuilder()
                              .Ethernet()
                              .Ipv4({.bad_checksum = true})
                              .Tcp({.bad_checksum = true})
                              .Build();
  EXPECT_FALSE(Ipv4HeaderChecksumIsValid(tcp_frame, kEthernetLength));
  EXPECT_FALSE(Ipv4L4ChecksumIsValid(tcp_frame, kEthernetLength));

  const Bytes icmp_frame =
      PacketBuilder().Ethernet().Ipv4().Icmpv4({.bad_checksum = true}).Build();
  EXPECT_FALSE(SumsToAllOnes(Tail(icmp_frame, kEthernetLength + kIpv4Length)));

  const Bytes udp_frame =
      PacketBuilder().Ethernet().Ipv6().Udp({.bad_checksum = true}).Build();
  const size_t udp = kEthernetLength + kIpv6Length;
  EXPECT_NE(Read16(udp_frame, udp + 6), 0);  // Not "no checksum".
  EXPECT_FALSE(
      Ipv6L4ChecksumIsValid(udp_frame, kEthernetLength, udp, kProtocolUdp));
}

TEST(PacketBuilderTest, ExplicitZeroUdpChecksumMeansNone) {
  const Bytes frame =
      PacketBuilder().Ethernet().Ipv4().Udp({.checksum = 0}).Build();
  EXPECT_EQ(Read16(frame, kEthernetLength + kIpv4Length + 6), 0);
}

TEST(PacketBuilderTest, UdpLengthOverride) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Ipv4()
                          .Udp({.sport = 5353, .dport = 53, .length = 4})
                          .Payload(CountingBytes(10))
                          .Build();
  const size_t udp = kEthernetLength + kIpv4Length;
  EXPECT_EQ(Read16(frame, udp), 5353);
  EXPECT_EQ(Read16(frame, udp + 2), 53);
  EXPECT_EQ(Read16(frame, udp + 4), 4);
  EXPECT_EQ(Read16(frame, kEthernetLength + 2), kIpv4Length + kUdpLength + 10);
}

TEST(PacketBuilderTest, SingleVlanTag) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Vlan({.vid = 100, .pcp = 5, .dei = true})
                          .Ipv4()
                          .Build();
  EXPECT_EQ(Read16(frame, 12), 0x8100);
  EXPECT_EQ(Read16(frame, 14), 5 << 13 | 1 << 12 | 100);
  EXPECT_EQ(Read16(frame, 16), 0x0800);
  EXPECT_EQ(frame[kEthernetLength + kVlanTagLength], 0x45);
}

TEST(PacketBuilderTest, QinQTagsAreStackedOuterFirst) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Vlan({.tpid = ETH_P_8021AD, .vid = 10})
                          .Vlan({.vid = 20})
                          .Ipv6()
                          .Build();
  EXPECT_EQ(Read16(frame, 12), ETH_P_8021AD);
  EXPECT_EQ(Read16(frame, 14), 10);
  EXPECT_EQ(Read16(frame, 16), ETH_P_8021Q);
  EXPECT_EQ(Read16(frame, 18), 20);
  EXPECT_EQ(Read16(frame, 20), ETH_P_IPV6);
  EXPECT_EQ(frame[kEthernetLength + 2 * kVlanTagLength] >> 4, 6);
}

TEST(PacketBuilderTest, Arp) {
  const Bytes frame = PacketBuilder()
                          .Ethernet({.dst = Mac("ff:ff:ff:ff:ff:ff")})
                          .Arp({.op = 2,
                                .sender_mac = Mac("02:00:00:00:00:aa"),
                                .sender_ip = Ipv4("10.0.0.9"),
                                .target_mac = Mac("02:00:00:00:00:bb"),
                                .target_ip = Ipv4("10.0.0.10")})
                          .Build();
  ASSERT_EQ(frame.size(), kEthernetLength + 28);
  EXPECT_EQ(Read16(frame, 12), ETH_P_ARP);
  const size_t arp = kEthernetLength;
  EXPECT_EQ(Read16(frame, arp), 1);  // Ethernet.
  EXPECT_EQ(Read16(frame, arp + 2), ETH_P_IP);
  EXPECT_EQ(frame[arp + 4], 6);
  EXPECT_EQ(frame[arp + 5], 4);
  EXPECT_EQ(Read16(frame, arp + 6), 2);
  EXPECT_THAT(Slice(frame, arp + 8, 6),
              ElementsAreArray(Mac("02:00:00:00:00:aa")));
  EXPECT_THAT(Slice(frame, arp + 14, 4), ElementsAre(10, 0, 0, 9));
  EXPECT_THAT(Slice(frame, arp + 18, 6),
              ElementsAreArray(Mac("02:00:00:00:00:bb")));
  EXPECT_THAT(Slice(frame, arp + 24, 4), ElementsAre(10, 0, 0, 10));
}

TEST(PacketBuilderTest, Ipv6HeaderAndUdpChecksum) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Ipv6({.src = Ipv6("2001:db8::1"),
                                 .dst = Ipv6("2001:db8::2"),
                                 .traffic_class = 0xb8,
                                 .flow_label = 0xabcde,
                                 .hop_limit = 3})
                          .Udp({.dport = 4242})
                          .Payload(CountingBytes(33))
                          .Build();
  EXPECT_EQ(Read16(frame, 12), ETH_P_IPV6);
  const size_t ip = kEthernetLength;
  EXPECT_EQ(Read32(frame, ip), 6u << 28 | 0xb8u << 20 | 0xabcde);
  EXPECT_EQ(Read16(frame, ip + 4), kUdpLength + 33);
  EXPECT_EQ(frame[ip + 6], kProtocolUdp);
  EXPECT_EQ(frame[ip + 7], 3);
  EXPECT_THAT(Slice(frame, ip + 8, 16), ElementsAreArray(Ipv6("2001:db8::1")));
  EXPECT_THAT(Slice(frame, ip + 24, 16), ElementsAreArray(Ipv6("2001:db8::2")));
  const size_t udp = ip + kIpv6Length;
  EXPECT_EQ(Read16(frame, udp + 4), kUdpLength + 33);
  EXPECT_TRUE(Ipv6L4ChecksumIsValid(frame, ip, udp, kProtocolUdp));
}

TEST(PacketBuilderTest, Ipv6Overrides) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Ipv6({.payload_length = 9, .next_header = 44})
                          .Payload({1, 2, 3})
                          .Build();
  EXPECT_EQ(Read16(frame, kEthernetLength + 4), 9);
  EXPECT_EQ(frame[kEthernetLength + 6], 44);
  EXPECT_EQ(frame.size(), kEthernetLength + kIpv6Length + 3);
}

TEST(PacketBuilderTest, Ipv6ExtensionHeaderChain) {
  const Ipv6Address home = Ipv6("2001:db8::99");
  const Bytes frame =
      PacketBuilder()
          .Ethernet()
          .Ipv6({.extension_headers =
                     {
                         Ipv6HopByHop{},
                         Ipv6Routing{.routing_type = 2,
                                     .segments_left = 1,
                                     .addresses = {home}},
                         Ipv6Fragment{.offset = 3,
                                      .more_fragments = true,
                                      .identification = 0xdeadbeef},
                         Ipv6DestinationOptions{},
                         Ipv6Authentication{.spi = 0x1000, .sequence = 5},
                         Ipv6RawExtension{.type = 253},
                     }})
          .Tcp()
          .Build();

  const size_t ip = kEthernetLength;
  // Walk the chain the way a parser would, recording each Next Header.
  std::vector<uint8_t> next_headers = {frame[ip + 6]};
  std::map<uint8_t, size_t> offset_of;
  size_t offset = ip + kIpv6Length;
  while (next_headers.back() != kProtocolTcp) {
    const uint8_t type = next_headers.back();
    offset_of[type] = offset;
    next_headers.push_back(frame[offset]);
    const uint8_t length_field = frame[offset + 1];
    offset += type == 44   ? 8
              : type == 51 ? (length_field + 2) * 4
                           : (length_field + 1) * 8;
  }
  EXPECT_THAT(next_headers, ElementsAre(0, 43, 44, 60, 51, 253, kProtocolTcp));

  // Empty hop-by-hop options are one PadN of 4 zero bytes.
  EXPECT_THAT(Slice(frame, offset_of[0], 8),
              ElementsAre(43, 0, 1, 4, 0, 0, 0, 0));
  const size_t routing = offset_of[43];
  EXPECT_EQ(frame[routing + 1], 2);  // (4 + 4 + 16) / 8 - 1.
  EXPECT_EQ(frame[routing + 2], 2);
  EXPECT_EQ(frame[routing + 3], 1);
  EXPECT_THAT(Slice(frame, routing + 8, 16), ElementsAreArray(home));
  const size_t fragment = offset_of[44];
  EXPECT_EQ(Read16(frame, fragment + 2), 3 << 3 | 1);
  EXPECT_EQ(Read32(frame, fragment + 4), 0xdeadbeefu);
  const size_t ah = offset_of[51];
  EXPECT_EQ(frame[ah + 1], 4);  // 24 bytes: 6 words minus 2.
  EXPECT_EQ(Read32(frame, ah + 4), 0x1000u);
  EXPECT_EQ(Read32(frame, ah + 8), 5u);

  EXPECT_EQ(offset, frame.size() - kTcpLength);
  EXPECT_EQ(Read16(frame, ip + 4), frame.size() - ip - kIpv6Length);
  EXPECT_TRUE(Ipv6L4ChecksumIsValid(frame, ip, offset, kProtocolTcp));
}

TEST(PacketBuilderTest, OptionsHeadersArePaddedToEightBytes) {
  auto destination_options = [](Bytes options) {
    return PacketBuilder()
        .Ethernet()
        .Ipv6({.extension_headers = {Ipv6DestinationOptions{
                   .options = std::move(options)}}})
        .Build();
  };
  const size_t header = kEthernetLength + kIpv6Length;
  // 2 + 5 bytes need one Pad1.
  EXPECT_THAT(Tail(destination_options({7, 3, 1, 2, 3}), header),
              ElementsAre(59, 0, 7, 3, 1, 2, 3, 0));
  // 2 + 6 bytes need none.
  EXPECT_THAT(Tail(destination_options({7, 4, 1, 2, 3, 4}), header),
              ElementsAre(59, 0, 7, 4, 1, 2, 3, 4));
  // 2 + 8 bytes need a PadN up to 16.
  EXPECT_THAT(Tail(destination_options({7, 6, 1, 2, 3, 4, 5, 6}), header),
              ElementsAre(59, 1, 7, 6, 1, 2, 3, 4, 5, 6, 1, 4, 0, 0, 0, 0));
}

TEST(PacketBuilderTest, Icmpv4Echo) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Ipv4()
                          .Icmpv4({.rest_of_header = IcmpEcho(0x1234, 7)})
                          .Payload(CountingBytes(11))
                          .Build();
  EXPECT_EQ(frame[kEthernetLength + 9], kProtocolIcmp);
  const size_t icmp = kEthernetLength + kIpv4Length;
  EXPECT_THAT(Slice(frame, icmp, 2), ElementsAre(8, 0));
  EXPECT_THAT(Slice(frame, icmp + 4, 4), ElementsAre(0x12, 0x34, 0, 7));
  EXPECT_TRUE(SumsToAllOnes(Tail(frame, icmp)));  // No pseudo-header.
}

TEST(PacketBuilderTest, Icmpv6EchoUsesPseudoHeader) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Ipv6()
                          .Icmpv6({.type = 129,
                                   .rest_of_header = IcmpEcho(1, 2),
                                   .body = {9, 9, 9}})
                          .Build();
  const size_t ip = kEthernetLength;
  const size_t icmp = ip + kIpv6Length;
  EXPECT_EQ(frame[ip + 6], kProtocolIcmpv6);
  EXPECT_THAT(Tail(frame, icmp + 4), ElementsAre(0, 1, 0, 2, 9, 9, 9));
  EXPECT_TRUE(Ipv6L4ChecksumIsValid(frame, ip, icmp, kProtocolIcmpv6));
}

TEST(PacketBuilderTest, NeighborSolicitation) {
  const Ipv6Address target = Ipv6("fd00::7");
  const Bytes frame =
      PacketBuilder()
          .Ethernet()
          .Ipv6({.hop_limit = 255})
          .NeighborSolicitation(
              {.target = target, .source_link_layer = Mac("02:00:00:00:00:01")})
          .Build();
  const size_t icmp = kEthernetLength + kIpv6Length;
  ASSERT_EQ(frame.size(), icmp + 32);
  EXPECT_THAT(Slice(frame, icmp, 2), ElementsAre(135, 0));
  EXPECT_EQ(Read32(frame, icmp + 4), 0u);
  EXPECT_THAT(Slice(frame, icmp + 8, 16), ElementsAreArray(target));
  EXPECT_THAT(Slice(frame, icmp + 24, 8), ElementsAre(1, 1, 2, 0, 0, 0, 0, 1));
  EXPECT_TRUE(
      Ipv6L4ChecksumIsValid(frame, kEthernetLength, icmp, kProtocolIcmpv6));
}

TEST(PacketBuilderTest, NeighborAdvertisement) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Ipv6()
                          .NeighborAdvertisement(
                              {.target = Ipv6("fd00::7"),
                               .router_flag = true,
                               .target_link_layer = Mac("02:00:00:00:00:07")})
                          .Build();
  const size_t icmp = kEthernetLength + kIpv6Length;
  EXPECT_EQ(frame[icmp], 136);
  EXPECT_EQ(frame[icmp + 4], 0xe0);  // Router, solicited, override.
  EXPECT_THAT(Slice(frame, icmp + 24, 8), ElementsAre(2, 1, 2, 0, 0, 0, 0, 7));
  EXPECT_TRUE(
      Ipv6L4ChecksumIsValid(frame, kEthernetLength, icmp, kProtocolIcmpv6));
}

TEST(PacketBuilderTest, RouterAdvertisement) {
  const Bytes frame =
      PacketBuilder()
          .Ethernet()
          .Ipv6()
          .RouterAdvertisement({.cur_hop_limit = 32,
                                .managed_flag = true,
                                .other_flag = true,
                                .router_lifetime = 600,
                                .reachable_time = 30000,
                                .retrans_timer = 1000,
                                .source_link_layer = Mac("02:00:00:00:00:fe")})
          .Build();
  const size_t icmp = kEthernetLength + kIpv6Length;
  ASSERT_EQ(frame.size(), icmp + 24);
  EXPECT_EQ(frame[icmp], 134);
  EXPECT_EQ(frame[icmp + 4], 32);
  EXPECT_EQ(frame[icmp + 5], 0xc0);
  EXPECT_EQ(Read16(frame, icmp + 6), 600);
  EXPECT_EQ(Read32(frame, icmp + 8), 30000u);
  EXPECT_EQ(Read32(frame, icmp + 12), 1000u);
  EXPECT_THAT(Slice(frame, icmp + 16, 8),
              ElementsAre(1, 1, 2, 0, 0, 0, 0, 0xfe));
  EXPECT_TRUE(
      Ipv6L4ChecksumIsValid(frame, kEthernetLength, icmp, kProtocolIcmpv6));
}

TEST(PacketBuilderTest, Icmpv4ErrorQuotesTruncatedInnerPacket) {
  PacketBuilder offending;
  offending.Ethernet()
      .Ipv4({.src = Ipv4("10.0.0.2"), .dst = Ipv4("192.0.2.1")})
      .Udp({.sport = 1000, .dport = 2000})
      .Payload(CountingBytes(100));
  const Bytes frame =
      PacketBuilder()
          .Ethernet()
          .Ipv4({.src = Ipv4("10.0.0.254"), .dst = Ipv4("10.0.0.2")})
          .Icmpv4Error({.type = 3, .code = 4, .rest_of_header = IcmpWord(1400)},
                       offending, kIpv4Length + kUdpLength)
          .Build();

  const size_t icmp = kEthernetLength + kIpv4Length;
  ASSERT_EQ(frame.size(), icmp + 8 + kIpv4Length + kUdpLength);
  EXPECT_EQ(frame[kEthernetLength + 9], kProtocolIcmp);
  EXPECT_THAT(Slice(frame, icmp, 2), ElementsAre(3, 4));
  EXPECT_THAT(Slice(frame, icmp + 4, 4), ElementsAre(0, 0, 0x05, 0x78));
  const Bytes offending_ip = offending.BuildFromNetworkLayer();
  EXPECT_EQ(Tail(frame, icmp + 8), Slice(offending_ip, 0, 28));
  EXPECT_TRUE(SumsToAllOnes(Tail(frame, icmp)));
}

TEST(PacketBuilderTest, Icmpv6ErrorQuotesWholeInnerPacket) {
  PacketBuilder offending;
  offending.Ethernet().Ipv6().Tcp({.flags = kTcpSyn});
  const Bytes frame =
      PacketBuilder()
          .Ethernet()
          .Ipv6()
          .Icmpv6Error({.type = 2, .rest_of_header = IcmpWord(1280)}, offending)
          .Build();
  const size_t icmp = kEthernetLength + kIpv6Length;
  EXPECT_EQ(frame[icmp], 2);
  EXPECT_EQ(Read32(frame, icmp + 4), 1280u);
  EXPECT_EQ(Tail(frame, icmp + 8), offending.BuildFromNetworkLayer());
  EXPECT_TRUE(
      Ipv6L4ChecksumIsValid(frame, kEthernetLength, icmp, kProtocolIcmpv6));
}

TEST(PacketBuilderTest, GreWithKeyCarriesInnerIpv4) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Ipv4()
                          .Gre({.key = 7})
                          .Ipv4({.src = Ipv4("172.16.0.1")})
                          .Udp()
                          .Build();
  EXPECT_EQ(frame[kEthernetLength + 9], kProtocolGre);
  const size_t gre = kEthernetLength + kIpv4Length;
  EXPECT_EQ(Read16(frame, gre), 0x2000);  // K bit, version 0.
  EXPECT_EQ(Read16(frame, gre + 2), ETH_P_IP);
  EXPECT_EQ(Read32(frame, gre + 4), 7u);
  const size_t inner = gre + 8;
  EXPECT_EQ(frame[inner], 0x45);
  EXPECT_THAT(Slice(frame, inner + 12, 4), ElementsAre(172, 16, 0, 1));
  EXPECT_TRUE(Ipv4HeaderChecksumIsValid(frame, inner));
  EXPECT_TRUE(Ipv4L4ChecksumIsValid(frame, inner));
}

TEST(PacketBuilderTest, GreWithChecksumAndSequenceCarriesEthernet) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Ipv6()
                          .Gre({.with_checksum = true, .sequence = 9})
                          .Ethernet()
                          .Ipv4()
                          .Build();
  const size_t gre = kEthernetLength + kIpv6Length;
  EXPECT_EQ(frame[kEthernetLength + 6], kProtocolGre);
  EXPECT_EQ(Read16(frame, gre), 0x9000);  // C and S bits.
  EXPECT_EQ(Read16(frame, gre + 2), ETH_P_TEB);
  EXPECT_EQ(Read32(frame, gre + 8), 9u);
  EXPECT_EQ(Read16(frame, gre + 12 + 12), ETH_P_IP);
  EXPECT_TRUE(SumsToAllOnes(Tail(frame, gre)));
}

TEST(PacketBuilderTest, IpInIpProtocolNumbers) {
  const Bytes ipv4_in_ipv4 =
      PacketBuilder().Ethernet().Ipv4().Ipv4().Tcp().Build();
  EXPECT_EQ(ipv4_in_ipv4[kEthernetLength + 9], kProtocolIpip);
  EXPECT_EQ(ipv4_in_ipv4[kEthernetLength + kIpv4Length + 9], kProtocolTcp);

  const Bytes ipv6_in_ipv4 =
      PacketBuilder().Ethernet().Ipv4().Ipv6().Udp().Build();
  EXPECT_EQ(ipv6_in_ipv4[kEthernetLength + 9], kProtocolIpv6);
  EXPECT_EQ(ipv6_in_ipv4[kEthernetLength + kIpv4Length] >> 4, 6);
  EXPECT_EQ(Read16(ipv6_in_ipv4, kEthernetLength + 2),
            kIpv4Length + kIpv6Length + kUdpLength);

  const Bytes ipv4_in_ipv6 = PacketBuilder().Ethernet().Ipv6().Ipv4().Build();
  EXPECT_EQ(ipv4_in_ipv6[kEthernetLength + 6], kProtocolIpip);
}

TEST(PacketBuilderTest, VxlanCarriesInnerEthernet) {
  const Bytes frame = PacketBuilder()
                          .Ethernet()
                          .Ipv4()
                          .Vxlan({.vni = 0x123456})
                          .Ethernet({.src = Mac("02:00:00:00:01:01")})
                          .Ipv4()
                          .Tcp()
                          .Build();
  const size_t ip = kEthernetLength;
  const size_t udp = ip + kIpv4Length;
  const size_t vxlan = udp + kUdpLength;
  const size_t inner = vxlan + 8;
  EXPECT_EQ(frame[ip + 9], kProtocolUdp);
  EXPECT_EQ(Read16(frame, udp), 49152);
  EXPECT_EQ(Read16(frame, udp + 2), kVxlanUdpPort);
  EXPECT_EQ(Read16(frame, udp + 4), frame.size() - udp);
  EXPECT_TRUE(Ipv4L4ChecksumIsValid(frame, ip));
  EXPECT_THAT(Slice(frame, vxlan, 8),
              ElementsAre(0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0));
  EXPECT_THAT(Slice(frame, inner + 6, 6),
              ElementsAreArray(Mac("02:00:00:00:01:01")));
  EXPECT_EQ(Read16(frame, inner + 12), ETH_P_IP);
  EXPECT_EQ(frame.size(), inner + kEthernetLength + kIpv4Length + kTcpLength);
}

TEST(PacketBuilderTest, TruncateCutsButKeepsOriginalLengths) {
  PacketBuilder builder;
  builder.Ethernet().Ipv4().Udp().Payload(CountingBytes(100));
  const Bytes whole = builder.Build();
  const Bytes truncated = builder.Truncate(40).Build();
  ASSERT_EQ(truncated.size(), 40u);
  EXPECT_EQ(truncated, Slice(whole, 0, 40));
  EXPECT_EQ(Read16(truncated, kEthernetLength + 2),
            kIpv4Length + kUdpLength + 100);
  EXPECT_EQ(builder.Truncate(1000).Build(), whole);
}

TEST(PacketBuilderTest, BuildFromNetworkLayerSkipsEthernetAndVlans) {
  PacketBuilder builder;
  builder.Ethernet().Vlan().Vlan().Ipv6().Tcp();
  const Bytes frame = builder.Build();
  EXPECT_EQ(builder.BuildFromNetworkLayer(),
            Tail(frame, kEthernetLength + 2 * kVlanTagLength));
}

TEST(PacketBuilderTest, AppendEncapsulatesAnotherBuilder) {
  PacketBuilder inner;
  inner.Ipv4({.ttl = 9}).Tcp({.dport = 22});
  const Bytes appended =
      PacketBuilder().Ethernet().Ipv6().Gre().Append(inner).Build();
  const Bytes direct = PacketBuilder()
                           .Ethernet()
                           .Ipv6()
                           .Gre()
                           .Ipv4({.ttl = 9})
                           .Tcp({.dport = 22})
                           .Build();
  EXPECT_EQ(appended, direct);
}

TEST(PacketBuilderTest, EthertypeOverrideAllowsRawPayload) {
  const Bytes frame =
      PacketBuilder().Ethernet({.ethertype = 0x88b5}).Payload({1, 2}).Build();
  EXPECT_EQ(Read16(frame, 12), 0x88b5);
  EXPECT_THAT(Tail(frame, kEthernetLength), ElementsAre(1, 2));
}

TEST(PacketBuilderTest, IpWithNothingAfterAnnouncesNoNextHeader) {
  EXPECT_EQ(PacketBuilder().Ethernet().Ipv4().Build()[kEthernetLength + 9],
            IPPROTO_NONE);
}

TEST(PacketBuilderDeathTest, UnderivableLinksAbort) {
  EXPECT_DEATH(PacketBuilder().Ethernet().Payload({1}).Build(), "ethertype");
  EXPECT_DEATH(PacketBuilder().Ethernet().Ipv6().Payload({1}).Build(),
               "protocol");
}

TEST(PacketBuilderTest, Ipv4FragmentsReassembleInAnyOrder) {
  PacketBuilder builder;
  builder.Ethernet()
      .Ipv4({.id = 0x4242, .options = {0x94, 0x04, 0, 0}})
      .Udp()
      .Payload(CountingBytes(100));
  const size_t ip = kEthernetLength;
  const size_t header_length = kIpv4Length + 4;
  const Bytes datagram_payload = Tail(builder.Build(), ip + header_length);

  std::vector<Bytes> fragments = builder.BuildFragments(32);
  ASSERT_EQ(fragments.size(), 4u);  // 108 bytes: 32 + 32 + 32 + 12.
  for (size_t i = 0; i < fragments.size(); ++i) {
    const Bytes& fragment = fragments[i];
    const bool last = i + 1 == fragments.size();
    const size_t chunk_size = last ? 12 : 32;
    ASSERT_EQ(fragment.size(), ip + header_length + chunk_size);
    EXPECT_EQ(Read16(fragment, 12), ETH_P_IP);
    EXPECT_EQ(fragment[ip], 0x46);
    EXPECT_EQ(Read16(fragment, ip + 2), header_length + chunk_size);
    EXPECT_EQ(Read16(fragment, ip + 4), 0x4242);
    EXPECT_EQ(Read16(fragment, ip + 6), (last ? 0 : 0x2000) | i * 4);
    EXPECT_EQ(fragment[ip + 9], kProtocolUdp);
    EXPECT_TRUE(Ipv4HeaderChecksumIsValid(fragment, ip));
  }

  // Reassemble last-to-first, placing each chunk by its offset field.
  Bytes reassembled(datagram_payload.size());
  for (auto it = fragments.rbegin(); it != fragments.rend(); ++it) {
    const size_t offset = (Read16(*it, ip + 6) & 0x1fff) * 8;
    const Bytes chunk = Tail(*it, ip + header_length);
    std::copy(chunk.begin(), chunk.end(), reassembled.begin() + offset);
  }
  EXPECT_EQ(reassembled, datagram_payload);
}

TEST(PacketBuilderTest, Ipv6FragmentsKeepPerHopHeadersUnfragmented) {
  PacketBuilder builder;
  builder.Ethernet()
      .Ipv6({.extension_headers = {Ipv6HopByHop{}, Ipv6DestinationOptions{}}})
      .Udp()
      .Payload(CountingBytes(100));
  const size_t ip = kEthernetLength;
  const size_t hop_by_hop = ip + kIpv6Length;
  const size_t fragment_header = hop_by_hop + 8;
  // Destination options (8) + UDP (108) are fragmentable.
  const Bytes fragmentable = Tail(builder.Build(), hop_by_hop + 8);
  ASSERT_EQ(fragmentable.size(), 116u);

  std::vector<Bytes> fragments = builder.BuildFragments(48, 0xabcdef01);
  ASSERT_EQ(fragments.size(), 3u);  // 48 + 48 + 20.
  for (size_t i = 0; i < fragments.size(); ++i) {
    const Bytes& fragment = fragments[i];
    const bool last = i + 1 == fragments.size();
    const size_t chunk_size = last ? 20 : 48;
    ASSERT_EQ(fragment.size(), fragment_header + 8 + chunk_size);
    EXPECT_EQ(Read16(fragment, ip + 4), 8 + 8 + chunk_size);
    EXPECT_EQ(fragment[ip + 6], 0);            // Hop-by-hop first,
    EXPECT_EQ(fragment[hop_by_hop], 44);       // then the fragment header,
    EXPECT_EQ(fragment[fragment_header], 60);  // announcing dest options.
    EXPECT_EQ(Read16(fragment, fragment_header + 2),
              (i * 48 / 8) << 3 | (last ? 0 : 1));
    EXPECT_EQ(Read32(fragment, fragment_header + 4), 0xabcdef01u);
  }

  std::swap(fragments[0], fragments[2]);
  Bytes reassembled(fragmentable.size());
  for (const Bytes& fragment : fragments) {
    const size_t offset = (Read16(fragment, fragment_header + 2) >> 3) * 8;
    const Bytes chunk = Tail(fragment, fragment_header + 8);
    std::copy(chunk.begin(), chunk.end(), reassembled.begin() + offset);
  }
  EXPECT_EQ(reassembled, fragmentable);
}

TEST(PacketBuilderTest, FragmentsRepeatVlanTagsAndHonourTruncate) {
  const size_t ip = kEthernetLength + kVlanTagLength;
  PacketBuilder builder;
  builder.Ethernet()
      .Vlan({.vid = 7})
      .Ipv4({.protocol = 253})
      .Payload(CountingBytes(16))
      .Truncate(ip + kIpv4Length + 4);
  const std::vector<Bytes> fragments = builder.BuildFragments(8);
  ASSERT_EQ(fragments.size(), 2u);
  for (const Bytes& fragment : fragments) {
    EXPECT_EQ(Read16(fragment, 12), ETH_P_8021Q);
    EXPECT_EQ(Read16(fragment, 14), 7);
    EXPECT_EQ(fragment[ip + 9], 253);
    EXPECT_EQ(fragment.size(), ip + kIpv4Length + 4);
  }
}

TEST(PacketBuilderDeathTest, FragmentSizeMustBeAMultipleOfEight) {
  PacketBuilder builder;
  builder.Ethernet().Ipv4().Udp().Payload(CountingBytes(64));
  EXPECT_DEATH(builder.BuildFragments(12), "multiple of 8");
}

}  // namespace
}  // namespace stockade::testing

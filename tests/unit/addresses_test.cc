// SPDX-License-Identifier: Apache-2.0
#include "stockade/net/addresses.h"

#include <gtest/gtest.h>

namespace stockade {
namespace {

TEST(AddressesTest, ParsesBothFamiliesInMapForm) {
  auto v4 = ParseIpAddress("10.1.2.3");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->family, STOCKADE_AF_INET);
  EXPECT_EQ(v4->bytes[0], 10);
  EXPECT_EQ(v4->bytes[3], 3);
  EXPECT_EQ(v4->bytes[4], 0);
  EXPECT_EQ(v4->ToString(), "10.1.2.3");
  auto v6 = ParseIpAddress("fd00::1");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->family, STOCKADE_AF_INET6);
  EXPECT_EQ(v6->bytes[0], 0xfd);
  EXPECT_EQ(v6->bytes[15], 1);
}

TEST(AddressesTest, RejectsGarbageWithTheInputInTheMessage) {
  auto bad = ParseIpAddress("10.0.0.256");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("10.0.0.256"), std::string::npos);
  EXPECT_FALSE(ParseIpPrefix("10.0.0.0/33").ok());
  EXPECT_FALSE(ParseIpPrefix("10.0.0.0/x").ok());
  EXPECT_FALSE(ParseMac("02:00:00:00:00").ok());
  EXPECT_FALSE(ParseMac("02:00:00:00:00:100").ok());
}

TEST(AddressesTest, PrefixWithHostBitsIsAnErrorNotATruncation) {
  auto bad = ParseIpPrefix("10.0.0.1/8");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("host bits"), std::string::npos);
}

TEST(AddressesTest, PrefixKeyCountsTheFamilyBits) {
  auto p = ParseIpPrefix("192.168.0.0/16");
  ASSERT_TRUE(p.ok());
  ipcache_key key = p->ToIpcacheKey();
  EXPECT_EQ(key.prefixlen, 32u + 16u);
  EXPECT_EQ(key.family, STOCKADE_AF_INET);
  EXPECT_TRUE(p->Contains(ParseIpAddress("192.168.7.7").value()));
  EXPECT_FALSE(p->Contains(ParseIpAddress("192.169.0.1").value()));
  EXPECT_FALSE(p->Contains(ParseIpAddress("::1").value()));
  auto whole = ParseIpPrefix("fd00::5");
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->length, 128);
}

TEST(AddressesTest, MacRoundTrips) {
  auto mac = ParseMac("02:42:ac:11:00:02");
  ASSERT_TRUE(mac.ok());
  EXPECT_EQ(FormatMac(mac->data()), "02:42:ac:11:00:02");
}

}  // namespace
}  // namespace stockade

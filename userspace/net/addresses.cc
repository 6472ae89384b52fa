// SPDX-License-Identifier: Apache-2.0
#include "stockade/net/addresses.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace stockade {

uint32_t IpAddress::ipv4_network_order() const {
  uint32_t v;
  std::memcpy(&v, bytes.data(), 4);
  return v;
}

std::string IpAddress::ToString() const { return FormatAddress(family, bytes.data()); }

std::string IpPrefix::ToString() const { return absl::StrCat(address.ToString(), "/", length); }

ipcache_key IpPrefix::ToIpcacheKey() const {
  ipcache_key key{};
  key.prefixlen = IPCACHE_PREFIX_FIXED_BITS + length;
  key.family = address.family;
  std::memcpy(key.addr, address.bytes.data(), 16);
  return key;
}

bool IpPrefix::Contains(const IpAddress& addr) const {
  if (addr.family != address.family) return false;
  for (int bit = 0; bit < length; ++bit) {
    int byte = bit / 8, mask = 0x80 >> (bit % 8);
    if ((addr.bytes[byte] & mask) != (address.bytes[byte] & mask)) return false;
  }
  return true;
}

absl::StatusOr<IpAddress> ParseIpAddress(absl::string_view text) {
  std::string s(text.data(), text.size());
  IpAddress addr;
  if (inet_pton(AF_INET, s.c_str(), addr.bytes.data()) == 1) {
    addr.family = STOCKADE_AF_INET;
    return addr;
  }
  if (inet_pton(AF_INET6, s.c_str(), addr.bytes.data()) == 1) {
    addr.family = STOCKADE_AF_INET6;
    return addr;
  }
  return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not an IPv4 or IPv6 address"));
}

absl::StatusOr<IpPrefix> ParseIpPrefix(absl::string_view text) {
  size_t slash = text.find('/');
  auto addr = ParseIpAddress(text.substr(0, slash));
  if (!addr.ok()) return addr.status();
  int max_len = addr->family == STOCKADE_AF_INET ? 32 : 128;
  int len = max_len;
  if (slash != absl::string_view::npos) {
    if (!absl::SimpleAtoi(text.substr(slash + 1), &len) || len < 0 || len > max_len)
      return absl::InvalidArgumentError(
          absl::StrCat("'", text, "': prefix length must be a number from 0 to ", max_len));
  }
  IpPrefix prefix{*addr, static_cast<uint8_t>(len)};
  for (int bit = len; bit < max_len; ++bit) {
    if (addr->bytes[bit / 8] & (0x80 >> (bit % 8)))
      return absl::InvalidArgumentError(absl::StrCat("'", text, "' has host bits set beyond /", len));
  }
  return prefix;
}

absl::StatusOr<std::array<uint8_t, 6>> ParseMac(absl::string_view text) {
  std::array<uint8_t, 6> mac{};
  unsigned int b[6];
  char trailing;
  std::string s(text.data(), text.size());
  if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &trailing) != 6)
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a MAC address (aa:bb:cc:dd:ee:ff)"));
  for (int i = 0; i < 6; ++i) {
    if (b[i] > 0xff) return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a MAC address"));
    mac[i] = static_cast<uint8_t>(b[i]);
  }
  return mac;
}

std::string FormatMac(const uint8_t mac[6]) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

std::string FormatAddress(uint8_t family, const uint8_t bytes[16]) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == STOCKADE_AF_INET) return inet_ntop(AF_INET, bytes, buf, sizeof(buf));
  if (family == STOCKADE_AF_INET6) return inet_ntop(AF_INET6, bytes, buf, sizeof(buf));
  return "-";
}

}  // namespace stockade

// SPDX-License-Identifier: Apache-2.0
//
// Addresses and prefixes as the maps carry them. Pure logic, no syscalls.
#ifndef STOCKADE_INCLUDE_STOCKADE_NET_ADDRESSES_H_
#define STOCKADE_INCLUDE_STOCKADE_NET_ADDRESSES_H_

#include <array>
#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "maps/abi.h"

namespace stockade {

// An IPv4 or IPv6 address in the maps' form: network order, IPv4 in the
// first four bytes and the rest zero.
struct IpAddress {
  uint8_t family = 0;  // STOCKADE_AF_INET or STOCKADE_AF_INET6
  std::array<uint8_t, 16> bytes{};

  bool operator==(const IpAddress&) const = default;
  uint32_t ipv4_network_order() const;
  std::string ToString() const;
};

struct IpPrefix {
  IpAddress address;  // host bits cleared
  uint8_t length = 0;

  bool operator==(const IpPrefix&) const = default;
  std::string ToString() const;
  // The LPM key of the ipcache map.
  ipcache_key ToIpcacheKey() const;
  bool Contains(const IpAddress& addr) const;
};

// "10.0.0.1", "fd00::1".
[[nodiscard]] absl::StatusOr<IpAddress> ParseIpAddress(absl::string_view text);
// "10.0.0.0/8", "fd00::/64"; a bare address is a full-length prefix. Host
// bits set beyond the length are an error, not silently cleared.
[[nodiscard]] absl::StatusOr<IpPrefix> ParseIpPrefix(absl::string_view text);
// "02:42:ac:11:00:02".
[[nodiscard]] absl::StatusOr<std::array<uint8_t, 6>> ParseMac(absl::string_view text);
std::string FormatMac(const uint8_t mac[6]);
// From a drop event or a key: family and 16 address bytes.
std::string FormatAddress(uint8_t family, const uint8_t bytes[16]);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_NET_ADDRESSES_H_

// SPDX-License-Identifier: Apache-2.0
//
// `stockadectl tls`: which allowed TCP flows began in TLS and which in
// plaintext, per endpoint pair and port, from a conntrack dump. The datapath
// classifies every TCP flow's first client payload once (bpf/lib/tls.h);
// this only counts. Pure logic.
#ifndef STOCKADE_INCLUDE_STOCKADE_CONNTRACK_TLS_REPORT_H_
#define STOCKADE_INCLUDE_STOCKADE_CONNTRACK_TLS_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "maps/abi.h"
#include "nlohmann/json.hpp"
#include "stockade/net/addresses.h"

namespace stockade {

// An endpoint the agent hooks: its conntrack entries carry its key.
struct TlsReportEndpoint {
  endpoint_key key{};
  std::string name;
  std::optional<IpAddress> ipv4, ipv6;
};

struct ConntrackFlow {
  ct_key key;
  ct_entry entry;
};

// Flows between one local endpoint and one remote, to one server port, in
// one direction (ingress: the remote is the client), under one requirement.
struct TlsReportRow {
  std::string local;   // the hooked endpoint's name
  std::string remote;  // an endpoint's name, else its address
  uint8_t direction = DIR_INGRESS;
  uint16_t port = 0;  // the server's, host order
  bool require_tls = false;
  uint64_t tls = 0;         // the client's first payload was a ClientHello
  uint64_t plaintext = 0;   // anything else (cut, where TLS is required and enforced)
  uint64_t no_payload = 0;  // the client sent nothing yet

  bool operator==(const TlsReportRow&) const = default;
};

// TCP flows of hooked endpoints still live at `now_ns` (the BPF clock,
// CLOCK_MONOTONIC), counted per row; rows sorted by local, remote, direction (ingress first), port.
std::vector<TlsReportRow> AggregateTlsFlows(const std::vector<ConntrackFlow>& flows,
                                            const std::vector<TlsReportEndpoint>& endpoints, uint64_t now_ns);

nlohmann::json TlsReportJson(const std::vector<TlsReportRow>& rows);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_CONNTRACK_TLS_REPORT_H_

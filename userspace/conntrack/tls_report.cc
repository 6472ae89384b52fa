// SPDX-License-Identifier: Apache-2.0
#include "stockade/conntrack/tls_report.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>

namespace stockade {
namespace {

bool SameEndpoint(const endpoint_key& a, const endpoint_key& b) {
  return a.netns_cookie == b.netns_cookie && a.ifindex == b.ifindex;
}

bool HasAddress(const TlsReportEndpoint& ep, uint8_t family, const uint8_t bytes[16]) {
  const std::optional<IpAddress>& addr = family == STOCKADE_AF_INET ? ep.ipv4 : ep.ipv6;
  return addr && addr->family == family && std::memcmp(addr->bytes.data(), bytes, 16) == 0;
}

}  // namespace

std::vector<TlsReportRow> AggregateTlsFlows(const std::vector<ConntrackFlow>& flows,
                                            const std::vector<TlsReportEndpoint>& endpoints, uint64_t now_ns) {
  using Key = std::tuple<std::string, std::string, uint8_t, uint16_t, bool>;
  std::map<Key, TlsReportRow> rows;
  for (const ConntrackFlow& flow : flows) {
    const ct_key& k = flow.key;
    const ct_entry& e = flow.entry;
    if (k.protocol != IPPROTO_TCP || e.expires_ns <= now_ns) continue;
    const endpoint_key hooked{.netns_cookie = k.netns_cookie, .ifindex = k.ifindex};
    auto local = std::find_if(endpoints.begin(), endpoints.end(),
                              [&](const TlsReportEndpoint& ep) { return SameEndpoint(ep.key, hooked); });
    if (local == endpoints.end()) continue;

    // The client sent the first packet; on egress the client is the local endpoint.
    const bool origin_is_a = e.flags & CT_F_ORIGIN_IS_A;
    const bool local_is_client = e.direction == DIR_EGRESS;
    const uint8_t* remote_addr = (origin_is_a == local_is_client) ? k.addr_b : k.addr_a;
    std::string remote = FormatAddress(k.family, remote_addr);
    for (const TlsReportEndpoint& ep : endpoints)
      if (HasAddress(ep, k.family, remote_addr)) remote = ep.name;

    const bool require_tls = e.flags & CT_F_TLS_REQUIRED;
    const uint16_t port = ntohs(e.policy_port);
    TlsReportRow& row = rows[{local->name, remote, e.direction, port, require_tls}];
    row.local = local->name;
    row.remote = remote;
    row.direction = e.direction;
    row.port = port;
    row.require_tls = require_tls;
    switch (e.tls_state) {
      case CT_TLS_CLIENT_HELLO:
        ++row.tls;
        break;
      case CT_TLS_PLAINTEXT:
        ++row.plaintext;
        break;
      default:
        ++row.no_payload;
    }
  }
  std::vector<TlsReportRow> out;
  for (auto& [key, row] : rows) out.push_back(std::move(row));
  return out;
}

nlohmann::json TlsReportJson(const std::vector<TlsReportRow>& rows) {
  nlohmann::json list = nlohmann::json::array();
  for (const TlsReportRow& r : rows)
    list.push_back({{"local", r.local},
                    {"remote", r.remote},
                    {"direction", r.direction == DIR_INGRESS ? "ingress" : "egress"},
                    {"port", r.port},
                    {"require_tls", r.require_tls},
                    {"tls", r.tls},
                    {"plaintext", r.plaintext},
                    {"no_payload", r.no_payload}});
  return {{"flows", list}};
}

}  // namespace stockade

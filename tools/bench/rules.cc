// SPDX-License-Identifier: Apache-2.0
#include "tools/bench/rules.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace stockade::bench {
namespace {

uint32_t ParseDotted(const char* dotted) {
  unsigned a, b, c, d;
  std::sscanf(dotted, "%u.%u.%u.%u", &a, &b, &c, &d);
  return (a << 24) | (b << 16) | (c << 8) | d;
}

// Ports of silent rules: 10000..59999, clear of the real flows' 5001-5201.
uint16_t FillerPort(size_t i) { return static_cast<uint16_t>(10000 + i % 50000); }

std::string IptablesMatch(const AllowRule& rule) {
  const char* proto = ProtocolName(rule.protocol);
  return absl::StrCat("-s ", FormatIpv4(rule.source), "/32 -p ", proto, " -m ", proto, " --dport ", rule.port);
}

std::string NftElement(const AllowRule& rule) {
  return absl::StrCat(FormatIpv4(rule.source), " . ", ProtocolName(rule.protocol), " . ", rule.port);
}

std::string IpsetElement(const AllowRule& rule) {
  return absl::StrCat(FormatIpv4(rule.source), ",", ProtocolName(rule.protocol), ":", rule.port);
}

}  // namespace

std::vector<AllowRule> MakeRuleSet(size_t filler) {
  std::vector<AllowRule> rules;
  rules.reserve(filler + 3);
  // Alternating protocols, so a linear chain cannot skip half by protocol.
  for (size_t i = 0; i < filler; ++i)
    rules.push_back({kFillerBase + 1 + static_cast<uint32_t>(i), i % 2 ? uint8_t{IPPROTO_TCP} : uint8_t{IPPROTO_UDP},
                     FillerPort(i)});
  uint32_t client = ParseDotted(kClientIp);
  rules.push_back({client, IPPROTO_UDP, kUdpPort});
  rules.push_back({client, IPPROTO_TCP, kTcpRrPort});
  rules.push_back({client, IPPROTO_TCP, kIperfPort});
  return rules;
}

std::string FormatIpv4(uint32_t a) {
  return absl::StrFormat("%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

const char* ProtocolName(uint8_t protocol) { return protocol == IPPROTO_TCP ? "tcp" : "udp"; }

std::string IptablesLinearScript(const std::vector<AllowRule>& rules, const NetfilterNames& names) {
  std::string out = absl::StrCat("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:",
                                 names.chain, " - [0:0]\n-A FORWARD -o ", names.out_ifname, " -j ", names.chain,
                                 "\n-A ", names.chain, " -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n");
  out.reserve(out.size() + rules.size() * 80);
  for (const AllowRule& rule : rules) absl::StrAppend(&out, "-A ", names.chain, " ", IptablesMatch(rule), " -j ACCEPT\n");
  absl::StrAppend(&out, "-A ", names.chain, " -j DROP\nCOMMIT\n");
  return out;
}

std::string IpsetScript(const std::vector<AllowRule>& rules, const NetfilterNames& names) {
  std::string out = absl::StrCat("create ", names.ipset, " hash:ip,port family inet hashsize 4096 maxelem ",
                                 std::max<size_t>(65536, rules.size() * 2), "\n");
  out.reserve(out.size() + rules.size() * 48);
  for (const AllowRule& rule : rules) absl::StrAppend(&out, "add ", names.ipset, " ", IpsetElement(rule), "\n");
  return out;
}

std::string IptablesIpsetScript(const NetfilterNames& names) {
  return absl::StrCat("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:", names.chain,
                      " - [0:0]\n-A FORWARD -o ", names.out_ifname, " -j ", names.chain, "\n-A ", names.chain,
                      " -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n-A ", names.chain,
                      " -m set --match-set ", names.ipset, " src,dst -j ACCEPT\n-A ", names.chain,
                      " -j DROP\nCOMMIT\n");
}

std::string NftSetScript(const std::vector<AllowRule>& rules, const NetfilterNames& names) {
  std::string out = absl::StrCat("table inet ", names.nft_table,
                                 " {\n  set allowed {\n    type ipv4_addr . inet_proto . inet_service\n");
  out.reserve(out.size() + rules.size() * 40);
  if (!rules.empty()) {
    absl::StrAppend(&out, "    elements = {\n");
    for (size_t i = 0; i < rules.size(); ++i)
      absl::StrAppend(&out, "      ", NftElement(rules[i]), i + 1 < rules.size() ? ",\n" : "\n");
    absl::StrAppend(&out, "    }\n");
  }
  absl::StrAppend(&out, "  }\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
                  "    oifname \"", names.out_ifname, "\" ct state established,related accept\n", "    oifname \"",
                  names.out_ifname, "\" ip saddr . meta l4proto . th dport @allowed accept\n", "    oifname \"",
                  names.out_ifname, "\" drop\n  }\n}\n");
  return out;
}

std::string IptablesRawDropScript(const NetfilterNames& names) {
  return absl::StrCat("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -i ", names.in_ifname,
                      " -p udp -m udp --dport ", kDeniedUdpPort, " -j DROP\nCOMMIT\n");
}

std::string NftRawDropScript(const NetfilterNames& names) {
  return absl::StrCat("table inet ", names.nft_table,
                      " {\n  chain prerouting {\n    type filter hook prerouting priority raw; policy accept;\n",
                      "    iifname \"", names.in_ifname, "\" udp dport ", kDeniedUdpPort, " drop\n  }\n}\n");
}

std::vector<std::string> IptablesInsertArgs(const AllowRule& rule, size_t position, const NetfilterNames& names) {
  return {"-w", "-I", names.chain, absl::StrCat(position), "-s", absl::StrCat(FormatIpv4(rule.source), "/32"), "-p",
          ProtocolName(rule.protocol), "--dport", absl::StrCat(rule.port), "-j", "ACCEPT"};
}

std::vector<std::string> IptablesDeleteArgs(const AllowRule& rule, const NetfilterNames& names) {
  return {"-w", "-D", names.chain, "-s", absl::StrCat(FormatIpv4(rule.source), "/32"), "-p",
          ProtocolName(rule.protocol), "--dport", absl::StrCat(rule.port), "-j", "ACCEPT"};
}

std::vector<std::string> IpsetAddArgs(const AllowRule& rule, const NetfilterNames& names) {
  return {"add", names.ipset, IpsetElement(rule)};
}

std::vector<std::string> IpsetDelArgs(const AllowRule& rule, const NetfilterNames& names) {
  return {"del", names.ipset, IpsetElement(rule)};
}

std::vector<std::string> NftAddElementArgs(const AllowRule& rule, const NetfilterNames& names) {
  return {"add", "element", "inet", names.nft_table, "allowed", absl::StrCat("{ ", NftElement(rule), " }")};
}

std::vector<std::string> NftDeleteElementArgs(const AllowRule& rule, const NetfilterNames& names) {
  return {"delete", "element", "inet", names.nft_table, "allowed", absl::StrCat("{ ", NftElement(rule), " }")};
}

std::string StockadePolicyYaml(const std::vector<AllowRule>& rules, const std::string& policy_name) {
  std::string out = absl::StrCat("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: ", policy_name,
                                 "}\nspec:\n  endpointSelector: {matchLabels: {role: server}}\n  ingress:\n");
  out.reserve(out.size() + rules.size() * 96);
  for (const AllowRule& rule : rules)
    absl::StrAppend(&out, "    - fromCIDR: [", FormatIpv4(rule.source), "/32]\n      toPorts: [{ports: [{port: \"",
                    rule.port, "\", protocol: ", rule.protocol == IPPROTO_TCP ? "TCP" : "UDP", "}]}]\n");
  return out;
}

}  // namespace stockade::bench

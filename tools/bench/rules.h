// SPDX-License-Identifier: Apache-2.0
//
// The one policy every contender of stockade-bench enforces, and its text for
// each netfilter loader. A "rule" is an (address, protocol, port) allow: N
// filler rules for addresses that send nothing, then the rules the real
// traffic needs, last, so a linear chain walks all N before it matches (the
// realistic worst case). Anything else is denied. Pure text: no syscalls.
#ifndef STOCKADE_TOOLS_BENCH_RULES_H_
#define STOCKADE_TOOLS_BENCH_RULES_H_

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <vector>

namespace stockade::bench {

struct AllowRule {
  uint32_t source;  // IPv4, host order
  uint8_t protocol;  // IPPROTO_UDP or IPPROTO_TCP
  uint16_t port;     // destination port
};

// The testbed's addresses and ports (all inside the benchmark's namespaces).
inline constexpr char kClientIp[] = "10.214.0.1";
inline constexpr char kHostClientSideIp[] = "10.214.0.254";
inline constexpr char kServerIp[] = "10.214.1.2";
inline constexpr char kHostServerSideIp[] = "10.214.1.254";
inline constexpr uint16_t kUdpPort = 5001;      // UDP flood, allowed
inline constexpr uint16_t kTcpRrPort = 5002;    // TCP_RR / TCP_CRR, allowed
inline constexpr uint16_t kIperfPort = 5201;    // iperf3, allowed
inline constexpr uint16_t kDeniedUdpPort = 5009;  // no rule: denied
inline constexpr uint16_t kProbeTcpPort = 5003;   // allowed only after a policy change
// Filler sources: 10.128.0.1 and up, never the client's 10.214/16.
inline constexpr uint32_t kFillerBase = (10u << 24) | (128u << 16);
inline constexpr size_t kMaxFillerRules = 1'000'000;

// `filler` rules for silent sources, then the real client's three rules.
std::vector<AllowRule> MakeRuleSet(size_t filler);
std::string FormatIpv4(uint32_t host_order);
const char* ProtocolName(uint8_t protocol);  // "udp", "tcp"

// The names a script refers to, unique to one run.
struct NetfilterNames {
  std::string chain;     // iptables chain, DOCKER-USER style
  std::string ipset;     // ipset set name (<= 31 characters)
  std::string nft_table; // nft table (family inet)
  std::string out_ifname;  // the server's host-side veth: what the chain matches on
  std::string in_ifname;   // the client's host-side veth: where floods enter
};

// iptables-restore input (both backends): FORWARD jumps to a chain of its
// own for traffic to the server, as DOCKER-USER is used; the chain accepts
// ESTABLISHED,RELATED first, then the rules in order, then drops.
std::string IptablesLinearScript(const std::vector<AllowRule>& rules, const NetfilterNames& names);
// `ipset restore` input: one hash:ip,port set with every rule.
std::string IpsetScript(const std::vector<AllowRule>& rules, const NetfilterNames& names);
// iptables-restore input matching that set with one rule.
std::string IptablesIpsetScript(const NetfilterNames& names);
// `nft -f` input: a concatenated set (address . protocol . port) in a
// forward chain, established first.
std::string NftSetScript(const std::vector<AllowRule>& rules, const NetfilterNames& names);
// The drop paths for a flood of denied UDP: the raw table before conntrack
// and routing (iptables), and nft's prerouting at raw priority.
std::string IptablesRawDropScript(const NetfilterNames& names);
std::string NftRawDropScript(const NetfilterNames& names);

// One rule more, in each tool's command-line form (argv without the binary).
std::vector<std::string> IptablesInsertArgs(const AllowRule& rule, size_t position, const NetfilterNames& names);
std::vector<std::string> IptablesDeleteArgs(const AllowRule& rule, const NetfilterNames& names);
std::vector<std::string> IpsetAddArgs(const AllowRule& rule, const NetfilterNames& names);
std::vector<std::string> IpsetDelArgs(const AllowRule& rule, const NetfilterNames& names);
std::vector<std::string> NftAddElementArgs(const AllowRule& rule, const NetfilterNames& names);
std::vector<std::string> NftDeleteElementArgs(const AllowRule& rule, const NetfilterNames& names);

// The stockade policy file for the same rules: one ingress rule per allow,
// from the source as a CIDR, for endpoints labelled role=server.
std::string StockadePolicyYaml(const std::vector<AllowRule>& rules, const std::string& policy_name);

}  // namespace stockade::bench

#endif  // STOCKADE_TOOLS_BENCH_RULES_H_

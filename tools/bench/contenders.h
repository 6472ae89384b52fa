// SPDX-License-Identifier: Apache-2.0
//
// The filters stockade-bench compares, each enforcing the same rule set
// (rules.h) in a testbed of its own (testbed.h): nothing, iptables linear
// rules (nft and legacy backends) in a DOCKER-USER-style chain, an ipset
// matched by one iptables rule, an nftables concatenated set, and stockade
// on TC (the server's host-side veth, egress) or XDP (the server's own
// interface). Netfilter state is loaded with the tools' own bulk loaders
// inside the testbed's host namespace, so the machine's own tables are never
// read or touched; stockade's datapath is loaded unpinned, so nothing of it
// can outlive the process.
#ifndef STOCKADE_TOOLS_BENCH_CONTENDERS_H_
#define STOCKADE_TOOLS_BENCH_CONTENDERS_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/bench/rules.h"
#include "tools/bench/testbed.h"

namespace stockade::bench {

// kTcDrop and kTcMinFilter enforce no rule set: they are references, TC
// programs on the hooks where stockade-tc sits. tc-drop drops every frame of
// the floods: the most any drop program can do there. tc-min-filter pulls
// and parses the headers and finds the interface and the flow in two hash
// tables, then drops the floods, and in the rule matrix passes all but the
// denied port: the most a filter that decides by interface and flow can do.
enum class ContenderKind {
  kNone,
  kIptablesNft,
  kIptablesLegacy,
  kIpset,
  kNftSet,
  kStockadeTc,
  kStockadeXdp,
  kTcDrop,
  kTcMinFilter
};
inline constexpr ContenderKind kAllContenders[] = {
    ContenderKind::kNone,        ContenderKind::kIptablesNft, ContenderKind::kIptablesLegacy,
    ContenderKind::kIpset,       ContenderKind::kNftSet,      ContenderKind::kStockadeTc,
    ContenderKind::kStockadeXdp, ContenderKind::kTcDrop,      ContenderKind::kTcMinFilter};
// "none", "iptables-nft", "iptables-legacy", "ipset", "nft-set", "stockade-tc", "stockade-xdp", "tc-drop",
// "tc-min-filter".
const char* ContenderName(ContenderKind kind);
// Loads the rule set, so has update measures: all but none and the references.
inline bool HasRuleSet(ContenderKind kind) {
  return kind != ContenderKind::kNone && kind != ContenderKind::kTcDrop && kind != ContenderKind::kTcMinFilter;
}
// A BPF program in the path: has the program's own time per packet.
inline bool IsBpfProgram(ContenderKind kind) {
  return kind == ContenderKind::kStockadeTc || kind == ContenderKind::kStockadeXdp || kind == ContenderKind::kTcDrop ||
         kind == ContenderKind::kTcMinFilter;
}
// Takes part in the floods only.
inline bool IsFloodOnly(ContenderKind kind) { return kind == ContenderKind::kTcDrop; }
// What the contender does for a flood of denied traffic: "iptables-raw", "nft-raw", ... ; empty: no flood role.
const char* FloodDropName(ContenderKind kind);

class Contender {
 public:
  virtual ~Contender() = default;
  ContenderKind kind() const { return kind_; }
  const char* name() const { return ContenderName(kind_); }

  // Loads `rules` in bulk and puts the filter in the path; seconds the load took.
  [[nodiscard]] virtual absl::StatusOr<double> Install(const std::vector<AllowRule>& rules) = 0;
  // Adds `rule` while the installed ones stay (for a linear chain: last
  // before the final drop), and takes it out again untimed; seconds of the add.
  [[nodiscard]] virtual absl::StatusOr<double> AddOne(const AllowRule& rule) = 0;
  // How many AddOne calls make a sample: a map write is cheap enough to
  // repeat many times, a netfilter command (fork, exec, ruleset dump) is not.
  virtual int AddOneRepetitions(int base) const { return base; }
  // Takes the filter out of the path, leaving nothing of it in the testbed.
  [[nodiscard]] virtual absl::Status Remove() = 0;
  // The cheapest drop of denied UDP (kDeniedUdpPort) this contender has, on
  // the client's host-side veth, before routing.
  [[nodiscard]] virtual absl::Status InstallFloodDrop() = 0;
  [[nodiscard]] virtual absl::Status RemoveFloodDrop() = 0;
  // Packets the filter itself counted as dropped by its flood drop, where it
  // can tell (stockade's counters); nullopt otherwise.
  [[nodiscard]] virtual absl::StatusOr<std::optional<uint64_t>> FloodDropsCounted() { return std::nullopt; }
  // The BPF program in the path now (the rule matrix's, or the flood drop's),
  // for its run-time statistics (program_runs.h); nullopt for netfilter.
  virtual std::optional<int> ProgramFd() const { return std::nullopt; }

 protected:
  explicit Contender(ContenderKind kind) : kind_(kind) {}

 private:
  ContenderKind kind_;
};

// `scratch_dir` holds the generated rule files; `names` must be unique to the run.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Contender>> MakeContender(ContenderKind kind, const Testbed& bed,
                                                                       const NetfilterNames& names,
                                                                       const std::string& scratch_dir);

}  // namespace stockade::bench

#endif  // STOCKADE_TOOLS_BENCH_CONTENDERS_H_

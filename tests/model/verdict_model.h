// SPDX-License-Identifier: Apache-2.0
//
// A reference model of the datapath's verdict: what a frame at one hook should
// get, from the map state and the model's own conntrack and fragment tables.
// It is written from the documented semantics (docs/architecture.md, the
// comments in maps/, docs/policy.md, tests/kernel/verdict_rows.h), for
// clarity and not for speed, and on purpose not from bpf/lib: the
// differential test (tests/kernel/differential_test.cc) runs the same frames
// through the real programs and the model and compares the answers, so a
// disagreement is a bug in one of two independent readings of the spec.
//
// Simplifications, each harmless for a test that runs for seconds: entries
// never expire (the shortest lifetime is 10 s), and the maps never fill.
#ifndef STOCKADE_TESTS_MODEL_VERDICT_MODEL_H_
#define STOCKADE_TESTS_MODEL_VERDICT_MODEL_H_

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "maps/abi.h"
#include "stockade/policy/policy_entries.h"

namespace stockade::model {

enum class HookPoint { kTcIngress, kTcEgress, kXdp };

// What the agent has written into the maps the verdict reads.
struct MapState {
  std::vector<std::pair<endpoint_key, endpoint_info>> endpoints;
  std::vector<std::pair<ipcache_key, ipcache_value>> ipcache;
  std::vector<PolicyEntry> policy;  // both policy maps: exact entries and prefixes
};

struct Verdict {
  uint8_t verdict = VERDICT_FORWARDED;  // enum stockade_verdict
  int reason = REASON_NONE;             // counted and reported under this reason
  uint32_t rule_id = 0;                 // reported with a drop or an audit
  uint8_t direction = DIR_INGRESS;      // the endpoint's point of view
  bool operator==(const Verdict&) const = default;
};

std::string ToString(const Verdict& v);

class VerdictModel {
 public:
  // `maps` is read on every Decide(), so a test changes it between packets
  // as the agent changes the maps.
  explicit VerdictModel(const MapState* maps) : maps_(maps) {}

  Verdict Decide(HookPoint hook, const endpoint_key& interface, std::span<const uint8_t> frame);

  // Forgets conntrack and fragments, as emptying those maps does.
  void ClearFlows();

  struct Flow;  // what one frame tells the verdict; defined in the .cc

 private:
  struct PolicyAnswer;

  int Enforce(const endpoint_key& interface, const endpoint_info& ep, Flow& flow, Verdict& out);
  PolicyAnswer DecidePolicy(const endpoint_info& ep, uint8_t direction, uint32_t remote_identity, uint8_t protocol,
                            uint16_t policy_port) const;
  std::optional<policy_value> LongestPolicyMatch(const policy_key& key) const;
  uint32_t IdentityOf(const uint8_t addr[16], uint8_t family) const;
  bool ErrorIsAboutOurFlow(const endpoint_key& interface, const endpoint_info& ep, const Flow& flow);

  const MapState* maps_;
  // Keyed by the raw bytes of ct_key / frag_key.
  std::map<std::string, ct_entry> conntrack_;
  std::map<std::string, frag_value> fragments_;
};

}  // namespace stockade::model

#endif  // STOCKADE_TESTS_MODEL_VERDICT_MODEL_H_

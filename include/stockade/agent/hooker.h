// SPDX-License-Identifier: Apache-2.0
//
// Where the agent's programs sit. The Hooker attaches them to workloads'
// interfaces (fail closed: a hooked interface drops until its endpoint's
// record is written), hooks interfaces Docker just made on sight, keeps
// every attachment by its pin path, adopts what a predecessor pinned and
// detaches what no endpoint wants any more. It touches the kernel (setns,
// rtnetlink, attach); the agent calls it with its lock held.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_HOOKER_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_HOOKER_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "stockade/agent/hook_resolver.h"
#include "stockade/agent/reconciler.h"
#include "stockade/agent/workload.h"
#include "stockade/datapath/attach.h"
#include "stockade/datapath/datapath.h"
#include "stockade/netns/links.h"

namespace stockade {

class Hooker {
 public:
  struct Options {
    TcAttachMode tc_mode = TcAttachMode::kAuto;
    bool xdp = false;  // XDP in place of TC ingress on host-side veths
  };
  Hooker(Datapath& datapath, Options options) : datapath_(datapath), options_(options) {}

  // At start: takes over the links a predecessor pinned, which stay attached throughout.
  void AdoptPinned();

  // One workload interface's hook, attached. Fills in the interface's MAC
  // and addresses when only its name is known (static endpoints).
  InterfaceHook Hook(WorkloadInterface& iface);
  // Ends a pass of Hook calls: the hooks it resolved are remembered for the
  // next pass (one setns and a few rtnetlink dumps an endpoint saved, which
  // made every Docker event cost O(all endpoints)), except `failed`.
  void EndPass(const std::vector<endpoint_key>& failed);
  // Every interface is resolved again from the next pass on (after Docker reconnects).
  void ForgetResolved() { resolved_.clear(); }

  // An interface the link monitor saw, hooked at once so its container's
  // first packet meets a program, not an open wire. `where` is for the log.
  // Kept for a while even when no endpoint wants it yet (DetachUnwanted).
  void HookOnSight(const ResolvedHook& hook, const std::string& where);
  // Whether the TC ingress (or XDP) pin of `hook` is attached already.
  bool Attached(const ResolvedHook& hook) const { return attachments_.contains(PinPaths(hook).front()); }

  // The hooks of an interface, by pin file suffix: "-ingress" (or "-xdp") and "-egress".
  std::vector<std::string> PinPaths(const ResolvedHook& hook) const;
  void DetachUnwanted(const std::set<std::string>& wanted_pins);
  size_t attachments() const { return attachments_.size(); }

 private:
  absl::StatusOr<ResolvedHook> ResolveCached(const WorkloadInterface& iface);
  absl::Status EnsureAttached(const ResolvedHook& hook);
  // With the thread in the hook's namespace: takes over a TCX link of ours
  // already on `ifindex` in `direction` under `pin` (hooked on sight before
  // Docker moved the interface into the container). False if there is none.
  bool AdoptMovedLink(const std::string& pin, uint32_t ifindex, TcHook direction);

  Datapath& datapath_;
  const Options options_;
  std::map<std::string, Attachment> attachments_;   // by pin path
  std::map<std::string, ResolvedHook> resolved_;    // by netns inode, MAC and placement: the last pass's
  std::map<std::string, ResolvedHook> this_pass_;   // what this pass used: resolved_ for the next
  // Hooked on sight, before Docker named their container: kept this long
  // even when no workload claims them yet.
  std::map<std::string, absl::Time> hooked_on_sight_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_HOOKER_H_

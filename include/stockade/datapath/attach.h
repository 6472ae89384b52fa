// SPDX-License-Identifier: Apache-2.0
//
// Attaching programs to interfaces. An Attachment detaches when it goes,
// unless it was pinned (a TCX or XDP link: it stays in bpffs and keeps
// enforcing after the agent exits) or released (a classic tc filter, which
// the kernel keeps until someone removes it).
//
// All of it acts in the calling thread's network namespace: enter the
// container's namespace with NetnsGuard first to attach inside it.
#ifndef STOCKADE_INCLUDE_STOCKADE_DATAPATH_ATTACH_H_
#define STOCKADE_INCLUDE_STOCKADE_DATAPATH_ATTACH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stockade/os/scoped_fd.h"

namespace stockade {

enum class TcHook { kIngress, kEgress };
// kAuto: TCX where the kernel has it (6.6+), else the clsact qdisc.
enum class TcAttachMode { kAuto, kTcx, kClassic };
// kAuto: native (driver) XDP, else generic.
enum class XdpAttachMode { kAuto, kNative, kGeneric };

class Attachment {
 public:
  enum class Kind { kTcxLink, kClassicTc, kXdpLink };

  [[nodiscard]] static absl::StatusOr<Attachment> AttachTc(int prog_fd, uint32_t ifindex, TcHook hook,
                                                           TcAttachMode mode);
  [[nodiscard]] static absl::StatusOr<Attachment> AttachXdp(int prog_fd, uint32_t ifindex, XdpAttachMode mode);
  // Takes over a link a previous agent pinned at `path` and points it at
  // `prog_fd` (a freshly loaded program) without a moment unattached. The
  // result stays pinned: Unpin() removes it.
  [[nodiscard]] static absl::StatusOr<Attachment> AdoptPinned(const std::string& path, int prog_fd);

  Attachment(Attachment&& other) noexcept;
  Attachment& operator=(Attachment&&) = delete;
  Attachment(const Attachment&) = delete;
  Attachment& operator=(const Attachment&) = delete;
  ~Attachment();

  // Pins a link under `path`; it then outlives this object and the process.
  // A classic tc filter has no link: pinning it is an error, Release() it instead.
  [[nodiscard]] absl::Status Pin(const std::string& path);
  // Leaves the program attached when this object goes.
  void Release() { released_ = true; }
  // Detaches now.
  [[nodiscard]] absl::Status Detach();
  // Removes the pin and detaches.
  [[nodiscard]] absl::Status Unpin();
  // Pins the link under `path` and removes its old pin: the link stays
  // attached throughout.
  [[nodiscard]] absl::Status Repin(const std::string& path);
  // The kernel's id of a TCX or XDP link; 0 for a classic tc filter.
  [[nodiscard]] absl::StatusOr<uint32_t> LinkId() const;

  Kind kind() const { return kind_; }
  // "tcx ingress on ifindex 7", for messages.
  std::string Describe() const;

 private:
  Attachment(Kind kind, ScopedFd link, uint32_t ifindex, TcHook hook, bool xdp_generic)
      : kind_(kind), link_(std::move(link)), ifindex_(ifindex), hook_(hook), xdp_generic_(xdp_generic) {}

  Kind kind_;
  ScopedFd link_;  // TCX and XDP links
  uint32_t ifindex_;
  TcHook hook_;
  bool xdp_generic_;
  bool released_ = false;
  ScopedFd netns_;  // where a classic filter lives, to remove it from there
  std::string pin_path_;
};

// The ids of the TCX links on `ifindex` of the calling thread's namespace, in
// the direction `hook`. A TCX link follows its device into another namespace
// (a clsact qdisc does not: the move destroys it), and this is how the agent
// finds such a link again there.
[[nodiscard]] absl::StatusOr<std::vector<uint32_t>> TcxLinkIds(uint32_t ifindex, TcHook hook);

// Removes the classic tc filters stockade put on an interface of the current
// namespace (both directions); absent ones are no error.
void RemoveClassicTcFilters(uint32_t ifindex);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_DATAPATH_ATTACH_H_

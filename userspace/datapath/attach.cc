// SPDX-License-Identifier: Apache-2.0
#include "stockade/datapath/attach.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/if_link.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "stockade/os/errno_status.h"
#include "stockade/netns/netns.h"

namespace stockade {
namespace {

// Our classic filters carry this handle and priority, so uninstall finds them
// and never touches anyone else's.
constexpr uint32_t kClassicHandle = 0x5bd;
constexpr uint32_t kClassicPriority = 0x5bd;

const char* HookName(TcHook hook) { return hook == TcHook::kIngress ? "ingress" : "egress"; }

bpf_tc_attach_point ClassicPoint(TcHook hook) { return hook == TcHook::kIngress ? BPF_TC_INGRESS : BPF_TC_EGRESS; }

int DetachClassic(uint32_t ifindex, TcHook hook) {
  DECLARE_LIBBPF_OPTS(bpf_tc_hook, tc_hook, .ifindex = static_cast<int>(ifindex),
                      .attach_point = ClassicPoint(hook));
  DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kClassicHandle, .priority = kClassicPriority);
  return bpf_tc_detach(&tc_hook, &opts);
}

}  // namespace

absl::StatusOr<Attachment> Attachment::AttachTc(int prog_fd, uint32_t ifindex, TcHook hook, TcAttachMode mode) {
  if (mode != TcAttachMode::kClassic) {
    DECLARE_LIBBPF_OPTS(bpf_link_create_opts, opts);
    int link = bpf_link_create(prog_fd, static_cast<int>(ifindex),
                               hook == TcHook::kIngress ? BPF_TCX_INGRESS : BPF_TCX_EGRESS, &opts);
    if (link >= 0) return Attachment(Kind::kTcxLink, ScopedFd(link), ifindex, hook, false);
    int err = errno;
    // Kernels before 6.6 know no TCX attach type: they answer EINVAL.
    bool tcx_missing = err == EINVAL || err == EOPNOTSUPP || err == ENOTSUP;
    if (mode == TcAttachMode::kTcx || !tcx_missing)
      return ErrnoStatus(err, absl::StrCat("attach tcx ", HookName(hook), " on ifindex ", ifindex));
  }
  DECLARE_LIBBPF_OPTS(bpf_tc_hook, tc_hook, .ifindex = static_cast<int>(ifindex), .attach_point = ClassicPoint(hook));
  int err = bpf_tc_hook_create(&tc_hook);  // the clsact qdisc; it may exist already
  if (err && err != -EEXIST)
    return ErrnoStatus(-err, absl::StrCat("create clsact qdisc on ifindex ", ifindex));
  DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE, .handle = kClassicHandle,
                      .priority = kClassicPriority);
  err = bpf_tc_attach(&tc_hook, &opts);
  if (err) return ErrnoStatus(-err, absl::StrCat("attach tc filter ", HookName(hook), " on ifindex ", ifindex));
  Attachment attachment(Kind::kClassicTc, ScopedFd(), ifindex, hook, false);
  attachment.netns_.Reset(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  return attachment;
}

absl::StatusOr<Attachment> Attachment::AttachXdp(int prog_fd, uint32_t ifindex, XdpAttachMode mode) {
  auto try_mode = [&](uint32_t flags) { 
    DECLARE_LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = flags);
    return bpf_link_create(prog_fd, static_cast<int>(ifindex), BPF_XDP, &opts);
  };
  if (mode != XdpAttachMode::kGeneric) {
    int link = try_mode(XDP_FLAGS_DRV_MODE);
    if (link >= 0) return Attachment(Kind::kXdpLink, ScopedFd(link), ifindex, TcHook::kIngress, false);
    if (mode == XdpAttachMode::kNative)
      return ErrnoStatus(errno, absl::StrCat("attach native xdp on ifindex ", ifindex));
  }
  int link = try_mode(XDP_FLAGS_SKB_MODE);
  if (link < 0) return ErrnoStatus(errno, absl::StrCat("attach generic xdp on ifindex ", ifindex));
  return Attachment(Kind::kXdpLink, ScopedFd(link), ifindex, TcHook::kIngress, true);
}

absl::StatusOr<Attachment> Attachment::AdoptPinned(const std::string& path, int prog_fd) {
  ScopedFd link(bpf_obj_get(path.c_str()));
  if (!link.valid()) return ErrnoStatus(errno, absl::StrCat("open pinned link ", path));
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_link_get_info_by_fd(link.get(), &info, &len) != 0) return ErrnoStatus(errno, absl::StrCat("inspect link ", path));
  if (bpf_link_update(link.get(), prog_fd, nullptr) != 0)
    return ErrnoStatus(errno, absl::StrCat("point pinned link ", path, " at the new program"));
  Kind kind = info.type == BPF_LINK_TYPE_XDP ? Kind::kXdpLink : Kind::kTcxLink;
  uint32_t ifindex = kind == Kind::kXdpLink ? info.xdp.ifindex : info.tcx.ifindex;
  TcHook hook = info.tcx.attach_type == BPF_TCX_EGRESS ? TcHook::kEgress : TcHook::kIngress;
  Attachment adopted(kind, std::move(link), ifindex, hook, false);
  adopted.released_ = true;
  adopted.pin_path_ = path;
  return adopted;
}

absl::Status Attachment::Unpin() {
  if (!pin_path_.empty() && unlink(pin_path_.c_str()) != 0 && errno != ENOENT)
    return ErrnoStatus(errno, absl::StrCat("unpin ", pin_path_));
  released_ = false;
  return Detach();
}

absl::Status Attachment::Repin(const std::string& path) {
  std::string old = pin_path_;
  if (auto s = Pin(path); !s.ok()) return s;
  if (!old.empty() && old != path && unlink(old.c_str()) != 0 && errno != ENOENT)
    return ErrnoStatus(errno, absl::StrCat("unpin ", old, " after pinning at ", path));
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> Attachment::LinkId() const {
  if (kind_ == Kind::kClassicTc) return 0;
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_link_get_info_by_fd(link_.get(), &info, &len) != 0)
    return ErrnoStatus(errno, absl::StrCat("inspect link of ", Describe()));
  return info.id;
}

absl::StatusOr<std::vector<uint32_t>> TcxLinkIds(uint32_t ifindex, TcHook hook) {
  // A device carries few programs; 64 is far more than any chain we meet.
  std::vector<uint32_t> prog_ids(64), link_ids(64);
  DECLARE_LIBBPF_OPTS(bpf_prog_query_opts, opts, .prog_ids = prog_ids.data(),
                      .count = static_cast<uint32_t>(prog_ids.size()), .link_ids = link_ids.data());
  if (bpf_prog_query_opts(static_cast<int>(ifindex), hook == TcHook::kIngress ? BPF_TCX_INGRESS : BPF_TCX_EGRESS,
                          &opts) != 0)
    return ErrnoStatus(errno, absl::StrCat("query tcx ", HookName(hook), " programs on ifindex ", ifindex));
  link_ids.resize(opts.count);
  std::erase(link_ids, 0u);  // programs attached without a link
  return link_ids;
}

Attachment::Attachment(Attachment&& other) noexcept
    : kind_(other.kind_),
      link_(std::move(other.link_)),
      ifindex_(other.ifindex_),
      hook_(other.hook_),
      xdp_generic_(other.xdp_generic_),
      released_(std::exchange(other.released_, true)),
      netns_(std::move(other.netns_)),
      pin_path_(std::move(other.pin_path_)) {}

Attachment::~Attachment() {
  if (!released_) (void)Detach();
}

absl::Status Attachment::Pin(const std::string& path) {
  if (kind_ == Kind::kClassicTc)
    return absl::FailedPreconditionError(absl::StrCat(Describe(), ": a classic tc filter has no link to pin"));
  if (bpf_obj_pin(link_.get(), path.c_str()) != 0)
    return ErrnoStatus(errno, absl::StrCat("pin ", Describe(), " at ", path));
  released_ = true;  // the pin holds the link now
  pin_path_ = path;
  return absl::OkStatus();
}

absl::Status Attachment::Detach() {
  if (released_) return absl::OkStatus();
  released_ = true;
  if (kind_ != Kind::kClassicTc) {
    if (bpf_link_detach(link_.get()) != 0 && errno != ENOLINK && errno != ENODEV)
      return ErrnoStatus(errno, absl::StrCat("detach ", Describe()));
    link_.Reset();
    return absl::OkStatus();
  }
  std::optional<absl::StatusOr<NetnsGuard>> guard;
  if (netns_.valid()) {
    guard.emplace(NetnsGuard::Enter(netns_.get()));
    if (!guard->ok()) return guard->status();
  }
  int err = DetachClassic(ifindex_, hook_);
  if (err && err != -ENOENT && err != -ENODEV && err != -EINVAL)
    return ErrnoStatus(-err, absl::StrCat("detach ", Describe()));
  return absl::OkStatus();
}

std::string Attachment::Describe() const {
  switch (kind_) {
    case Kind::kTcxLink:
      return absl::StrCat("tcx ", HookName(hook_), " on ifindex ", ifindex_);
    case Kind::kClassicTc:
      return absl::StrCat("tc filter ", HookName(hook_), " on ifindex ", ifindex_);
    case Kind::kXdpLink:
      return absl::StrCat(xdp_generic_ ? "generic" : "native", " xdp on ifindex ", ifindex_);
  }
  return "attachment";
}

void RemoveClassicTcFilters(uint32_t ifindex) {
  DetachClassic(ifindex, TcHook::kIngress);
  DetachClassic(ifindex, TcHook::kEgress);
}

}  // namespace stockade

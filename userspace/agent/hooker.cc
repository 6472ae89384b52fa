// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/hooker.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "stockade/agent/agent_log.h"
#include "stockade/os/errno_status.h"
#include "stockade/netns/netns.h"

namespace stockade {
namespace {

std::string HookKeyName(const endpoint_key& key) { return absl::StrCat(key.netns_cookie, "-", key.ifindex); }

// The interface of a static endpoint, named rather than known by MAC: its MAC and addresses.
absl::Status FillFromInterface(WorkloadInterface& iface) {
  if (iface.ifname.empty())  // a Docker attachment without a MAC address
    return absl::FailedPreconditionError(absl::StrCat(
        "Docker reports no MAC address on network ", iface.network, " (driver ", iface.driver,
        "), so its interface cannot be found: not enforced"));
  auto guard = NetnsGuard::Enter(iface.netns_path);
  if (!guard.ok()) return guard.status();
  auto links = ListLinks();
  if (!links.ok()) return links.status();
  auto link = std::find_if(links->begin(), links->end(), [&](const LinkInfo& l) { return l.name == iface.ifname; });
  if (link == links->end())
    return absl::NotFoundError(absl::StrCat("no interface ", iface.ifname, " in ", iface.netns_path));
  iface.mac = link->mac;
  auto addresses = ListAddresses();
  if (!addresses.ok()) return addresses.status();
  for (const LinkAddress& a : *addresses) {
    if (a.ifindex != link->ifindex || a.link_local) continue;
    const IpAddress addr = a.address();
    if (a.family == AF_INET && !iface.ipv4) iface.ipv4 = addr;
    if (a.family == AF_INET6 && !iface.ipv6) iface.ipv6 = addr;
  }
  return absl::OkStatus();
}

}  // namespace

void Hooker::AdoptPinned() {
  std::error_code ec;
// Adopt what a predecessor pinned: the links stay attached throughout.
std::string links_dir = datapath_.pin_dir() + "/" STOCKADE_PIN_LINKS_SUBDIR;
for (const auto& entry : std::filesystem::directory_iterator(links_dir, ec)) {
  std::string name = entry.path().filename();
  int prog = name.ends_with("-egress") ? datapath_.tc_egress_fd()
             : name.ends_with("-xdp")  ? datapath_.xdp_fd()
                                       : datapath_.tc_ingress_fd();
  auto adopted = Attachment::AdoptPinned(entry.path(), prog);
  if (!adopted.ok()) {
    AgentLog(absl::StrCat("dropping stale pin: ", adopted.status().message()));
    std::filesystem::remove(entry.path(), ec);
    continue;
  }
  attachments_.emplace(entry.path(), std::move(*adopted));
}
}

InterfaceHook Hooker::Hook(WorkloadInterface& iface) {
  InterfaceHook h;
  absl::Status filled = iface.mac ? absl::OkStatus() : FillFromInterface(iface);
  auto hook = filled.ok() ? ResolveCached(iface) : absl::StatusOr<ResolvedHook>(filled);
  if (!hook.ok()) {
    h.error = std::string(hook.status().message());
    return h;
  }
  h.hook = *hook;
  if (absl::Status s = EnsureAttached(h.hook); !s.ok()) h.error = std::string(s.message());
  return h;
}

void Hooker::EndPass(const std::vector<endpoint_key>& failed) {
  for (const endpoint_key& key : failed)
    std::erase_if(this_pass_, [&](const auto& entry) {
      return entry.second.key.ifindex == key.ifindex && entry.second.key.netns_cookie == key.netns_cookie;
    });
  resolved_ = std::move(this_pass_);
  this_pass_.clear();
}

absl::StatusOr<ResolvedHook> Hooker::ResolveCached(const WorkloadInterface& iface) {
  // The namespace's inode tells a reused pid's new namespace from the old one.
  // What a hook carries besides its interface (the IPv6 link-local address)
  // is there by the start event, Docker brings the link up before; a full
  // resync reads it all again anyway.
  struct stat netns {};
  if (stat(iface.netns_path.c_str(), &netns) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", iface.netns_path));
  std::string key = absl::StrCat(netns.st_dev, ":", netns.st_ino, "/", FormatMac(iface.mac->data()), "/",
                                 static_cast<int>(iface.placement));
  if (auto hit = resolved_.find(key); hit != resolved_.end()) return this_pass_[key] = hit->second;
  auto hook = ResolveHook(iface.netns_path, *iface.mac, iface.placement);
  if (hook.ok()) this_pass_[key] = *hook;
  return hook;
}

void Hooker::HookOnSight(const ResolvedHook& hook, const std::string& where) {
  std::vector<std::string> pins = PinPaths(hook);
  if (attachments_.contains(pins.front())) return;
  if (auto s = EnsureAttached(hook); !s.ok()) {
    AgentLog(absl::StrCat("hook ", hook.ifname, " (", where, ") on sight: ", s.message()));
    return;
  }
  for (const std::string& pin : pins) hooked_on_sight_[pin] = absl::Now();
  AgentLog(absl::StrCat("hooked ", hook.ifname, " (", where, ") on sight; it drops until its container is known"));
}

std::vector<std::string> Hooker::PinPaths(const ResolvedHook& hook) const {
  std::string base = absl::StrCat(datapath_.pin_dir(), "/" STOCKADE_PIN_LINKS_SUBDIR "/", HookKeyName(hook.key));
  bool xdp = options_.xdp && hook.role == HOOK_ROLE_HOST_VETH;
  return {base + (xdp ? "-xdp" : "-ingress"), base + "-egress"};
}

absl::Status Hooker::EnsureAttached(const ResolvedHook& hook) {
  std::optional<absl::StatusOr<NetnsGuard>> guard;
  for (const std::string& pin : PinPaths(hook)) {
    if (attachments_.contains(pin)) continue;
    if (!hook.netns_path.empty() && !guard) {
      guard.emplace(NetnsGuard::Enter(hook.netns_path));
      if (!guard->ok()) return guard->status();
    }
    TcHook direction = pin.ends_with("-egress") ? TcHook::kEgress : TcHook::kIngress;
    if (hook.role == HOOK_ROLE_IN_CONTAINER && !pin.ends_with("-xdp") && AdoptMovedLink(pin, hook.ifindex, direction))
      continue;
    absl::StatusOr<Attachment> attachment =
        pin.ends_with("-xdp")      ? Attachment::AttachXdp(datapath_.xdp_fd(), hook.ifindex, XdpAttachMode::kAuto)
        : pin.ends_with("-egress") ? Attachment::AttachTc(datapath_.tc_egress_fd(), hook.ifindex, TcHook::kEgress,
                                                          options_.tc_mode)
                                   : Attachment::AttachTc(datapath_.tc_ingress_fd(), hook.ifindex, TcHook::kIngress,
                                                          options_.tc_mode);
    if (!attachment.ok())
      return absl::Status(attachment.status().code(), absl::StrCat(hook.ifname, ": ", attachment.status().message()));
    if (attachment->kind() == Attachment::Kind::kClassicTc) {
      attachment->Release();  // no link to pin; the filter stays until uninstall
    } else if (auto s = attachment->Pin(pin); !s.ok()) {
      return s;
    }
    attachments_.emplace(pin, std::move(*attachment));
  }
  return absl::OkStatus();
}

void Hooker::DetachUnwanted(const std::set<std::string>& wanted_pins) {
  constexpr absl::Duration kClaimGrace = absl::Seconds(30);
  for (auto it = attachments_.begin(); it != attachments_.end();) {
    auto seen = hooked_on_sight_.find(it->first);
    bool waiting_for_docker = seen != hooked_on_sight_.end() && absl::Now() - seen->second < kClaimGrace;
    if (seen != hooked_on_sight_.end() && (!waiting_for_docker || wanted_pins.contains(it->first)))
      hooked_on_sight_.erase(seen);
    if (wanted_pins.contains(it->first) || waiting_for_docker) {
      ++it;
      continue;
    }
    if (auto s = it->second.Unpin(); !s.ok()) AgentLog(absl::StrCat("detach ", it->first, ": ", s.message()));
    it = attachments_.erase(it);
  }
}

bool Hooker::AdoptMovedLink(const std::string& pin, uint32_t ifindex, TcHook direction) {
  auto here = TcxLinkIds(ifindex, direction);
  if (!here.ok() || here->empty()) return false;
  for (auto it = attachments_.begin(); it != attachments_.end(); ++it) {
    if (it->second.kind() != Attachment::Kind::kTcxLink) continue;
    auto id = it->second.LinkId();
    if (!id.ok() || std::find(here->begin(), here->end(), *id) == here->end()) continue;
    if (auto s = it->second.Repin(pin); !s.ok()) {
      AgentLog(absl::StrCat("adopt ", it->first, ": ", s.message()));
      return false;
    }
    AgentLog(absl::StrCat("adopted ", it->first, " as ", pin, ": hooked on sight before Docker moved it"));
    hooked_on_sight_.erase(it->first);
    attachments_.emplace(pin, std::move(it->second));
    attachments_.erase(it);
    return true;
  }
  return false;
}

}  // namespace stockade

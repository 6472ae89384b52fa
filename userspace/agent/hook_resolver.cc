// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/hook_resolver.h"

#include <sys/socket.h>

#include "absl/strings/str_cat.h"
#include "stockade/net/addresses.h"
#include "stockade/netns/links.h"
#include "stockade/netns/netns.h"

namespace stockade {

absl::StatusOr<ResolvedHook> ResolveHook(const std::string& container_netns, const std::array<uint8_t, 6>& mac,
                                         HookPlacement placement) {
  ResolvedHook hook;
  LinkInfo inside;
  {
    auto guard = NetnsGuard::Enter(container_netns);
    if (!guard.ok()) return guard.status();
    auto links = ListLinks();
    if (!links.ok()) return links.status();
    auto found = std::find_if(links->begin(), links->end(), [&](const LinkInfo& l) { return l.mac == mac; });
    if (found == links->end())
      return absl::NotFoundError(absl::StrCat("no interface with MAC ", FormatMac(mac.data()), " in ", container_netns));
    inside = *found;
    auto addresses = ListAddresses();
    if (!addresses.ok()) return addresses.status();
    for (const LinkAddress& a : *addresses)
      if (a.ifindex == inside.ifindex && a.link_local) hook.ipv6_link_local = a.bytes;
    hook.container_ifname = inside.name;
    if (placement == HookPlacement::kInContainer) {
      auto cookie = NetnsCookie(container_netns);
      if (!cookie.ok()) return cookie.status();
      hook.key.netns_cookie = *cookie;
      hook.key.ifindex = inside.ifindex;
      hook.role = HOOK_ROLE_IN_CONTAINER;
      hook.netns_path = container_netns;
      hook.ifindex = inside.ifindex;
      hook.ifname = inside.name;
      return hook;
    }
  }
  if (inside.kind != "veth" || inside.peer_ifindex == 0)
    return absl::FailedPreconditionError(
        absl::StrCat(inside.name, " in ", container_netns, " is a ", inside.kind.empty() ? "non-veth" : inside.kind,
                     " interface, not a veth with a host-side peer"));
  auto links = ListLinks();
  if (!links.ok()) return links.status();
  auto peer = std::find_if(links->begin(), links->end(),
                           [&](const LinkInfo& l) { return l.ifindex == inside.peer_ifindex && l.kind == "veth"; });
  if (peer == links->end())
    return absl::NotFoundError(absl::StrCat("the host-side peer (ifindex ", inside.peer_ifindex, ") of ",
                                            inside.name, " in ", container_netns, " is not in this namespace"));
  auto cookie = NetnsCookie("/proc/thread-self/ns/net");
  if (!cookie.ok()) return cookie.status();
  hook.key.netns_cookie = *cookie;
  hook.key.ifindex = peer->ifindex;
  hook.role = HOOK_ROLE_HOST_VETH;
  hook.ifindex = peer->ifindex;
  hook.ifname = peer->name;
  return hook;
}

}  // namespace stockade

// SPDX-License-Identifier: Apache-2.0
#include "stockade/netns/links.h"

#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/net_namespace.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstring>

#include "stockade/os/errno_status.h"
#include "stockade/os/scoped_fd.h"

namespace stockade {
namespace {

void ParseLinkInfoKind(const rtattr* info, int len, LinkInfo& link) {
  for (const rtattr* a = static_cast<const rtattr*>(RTA_DATA(info)); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == IFLA_INFO_KIND) link.kind = static_cast<const char*>(RTA_DATA(a));
  }
}

LinkInfo ParseLink(const nlmsghdr* msg) {
  const auto* ifi = static_cast<const ifinfomsg*>(NLMSG_DATA(msg));
  LinkInfo link;
  link.ifindex = static_cast<uint32_t>(ifi->ifi_index);
  link.up = ifi->ifi_flags & IFF_UP;
  int len = static_cast<int>(IFLA_PAYLOAD(msg));
  for (const rtattr* a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    switch (a->rta_type) {
      case IFLA_IFNAME:
        link.name = static_cast<const char*>(RTA_DATA(a));
        break;
      case IFLA_ADDRESS:
        if (RTA_PAYLOAD(a) == 6) std::memcpy(link.mac.data(), RTA_DATA(a), 6);
        break;
      case IFLA_LINK:
        std::memcpy(&link.peer_ifindex, RTA_DATA(a), 4);
        break;
      case IFLA_LINK_NETNSID:
        link.peer_in_other_netns = true;
        std::memcpy(&link.peer_netnsid, RTA_DATA(a), 4);
        break;
      case IFLA_MASTER:
        std::memcpy(&link.master_ifindex, RTA_DATA(a), 4);
        break;
      case IFLA_LINKINFO:
        ParseLinkInfoKind(a, static_cast<int>(RTA_PAYLOAD(a)), link);
        break;
    }
  }
  return link;
}

// Sends one rtnetlink dump request and hands every answer of `type` to `parse`.
template <typename Body, typename Parse>
absl::Status Dump(uint16_t request_type, uint16_t answer_type, uint8_t family, const char* what, Parse parse) {
  ScopedFd sock(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock.valid()) return ErrnoStatus(errno, "open rtnetlink socket");
  struct {
    nlmsghdr header;
    Body body;
  } request{};
  request.header.nlmsg_len = sizeof(request);
  request.header.nlmsg_type = request_type;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = 1;
  std::memcpy(&request.body, &family, 1);  // ifi_family and ifa_family both lead their struct
  if (send(sock.get(), &request, sizeof(request), 0) < 0) return ErrnoStatus(errno, what);

  alignas(nlmsghdr) char buf[32768];
  for (;;) {
    ssize_t n = recv(sock.get(), buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, what);
    }
    int len = static_cast<int>(n);
    for (auto* msg = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(msg, static_cast<unsigned>(len));
         msg = NLMSG_NEXT(msg, len)) {
      if (msg->nlmsg_type == NLMSG_DONE) return absl::OkStatus();
      if (msg->nlmsg_type == NLMSG_ERROR) {
        const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(msg));
        return ErrnoStatus(-err->error, what);
      }
      if (msg->nlmsg_type == answer_type) parse(msg);
    }
  }
}

LinkAddress ParseAddress(const nlmsghdr* msg) {
  const auto* ifa = static_cast<const ifaddrmsg*>(NLMSG_DATA(msg));
  LinkAddress addr;
  addr.ifindex = ifa->ifa_index;
  addr.family = ifa->ifa_family;
  addr.prefix_length = ifa->ifa_prefixlen;
  int len = static_cast<int>(IFA_PAYLOAD(msg));
  for (const rtattr* a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == IFA_ADDRESS && RTA_PAYLOAD(a) <= 16) std::memcpy(addr.bytes.data(), RTA_DATA(a), RTA_PAYLOAD(a));
  }
  addr.link_local = addr.family == AF_INET6 && addr.bytes[0] == 0xfe && (addr.bytes[1] & 0xc0) == 0x80;
  return addr;
}

}  // namespace

IpAddress LinkAddress::address() const {
  return {family == AF_INET ? uint8_t{STOCKADE_AF_INET} : uint8_t{STOCKADE_AF_INET6}, bytes};
}

absl::StatusOr<std::vector<LinkInfo>> ListLinks() {
  std::vector<LinkInfo> links;
  absl::Status s = Dump<ifinfomsg>(RTM_GETLINK, RTM_NEWLINK, AF_UNSPEC, "RTM_GETLINK dump",
                                   [&](const nlmsghdr* msg) { links.push_back(ParseLink(msg)); });
  if (!s.ok()) return s;
  return links;
}

absl::StatusOr<std::vector<LinkAddress>> ListAddresses() {
  std::vector<LinkAddress> addresses;
  absl::Status s = Dump<ifaddrmsg>(RTM_GETADDR, RTM_NEWADDR, AF_UNSPEC, "RTM_GETADDR dump",
                                   [&](const nlmsghdr* msg) { addresses.push_back(ParseAddress(msg)); });
  if (!s.ok()) return s;
  return addresses;
}

absl::StatusOr<int32_t> NetnsIdOf(int netns_fd) {
  ScopedFd sock(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock.valid()) return ErrnoStatus(errno, "open rtnetlink socket");
  struct {
    nlmsghdr header;
    rtgenmsg body;
    char body_pad[NLMSG_ALIGN(sizeof(rtgenmsg)) - sizeof(rtgenmsg)];
    rtattr fd_attr;
    uint32_t fd;
  } request{};
  request.header.nlmsg_len = sizeof(request);
  request.header.nlmsg_type = RTM_GETNSID;
  request.header.nlmsg_flags = NLM_F_REQUEST;
  request.body.rtgen_family = AF_UNSPEC;
  request.fd_attr.rta_type = NETNSA_FD;
  request.fd_attr.rta_len = RTA_LENGTH(sizeof(uint32_t));
  request.fd = static_cast<uint32_t>(netns_fd);
  if (send(sock.get(), &request, sizeof(request), 0) < 0) return ErrnoStatus(errno, "RTM_GETNSID");
  alignas(nlmsghdr) char buf[4096];
  ssize_t n;
  do {
    n = recv(sock.get(), buf, sizeof(buf), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoStatus(errno, "RTM_GETNSID");
  int len = static_cast<int>(n);
  for (auto* msg = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(msg, static_cast<unsigned>(len));
       msg = NLMSG_NEXT(msg, len)) {
    if (msg->nlmsg_type == NLMSG_ERROR)
      return ErrnoStatus(-static_cast<const nlmsgerr*>(NLMSG_DATA(msg))->error, "RTM_GETNSID");
    if (msg->nlmsg_type != RTM_NEWNSID) continue;
    int attrs_len = static_cast<int>(msg->nlmsg_len - NLMSG_LENGTH(NLMSG_ALIGN(sizeof(rtgenmsg))));
    const auto* a = reinterpret_cast<const rtattr*>(static_cast<const char*>(NLMSG_DATA(msg)) +
                                                    NLMSG_ALIGN(sizeof(rtgenmsg)));
    for (; RTA_OK(a, attrs_len); a = RTA_NEXT(a, attrs_len)) {
      if (a->rta_type != NETNSA_NSID) continue;
      int32_t id;
      std::memcpy(&id, RTA_DATA(a), sizeof(id));
      return id;
    }
  }
  return absl::InternalError("RTM_GETNSID: no NETNSA_NSID in the answer");
}

absl::StatusOr<LinkMonitor> LinkMonitor::Open() {
  ScopedFd sock(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE));
  if (!sock.valid()) return ErrnoStatus(errno, "open rtnetlink socket");
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = RTMGRP_LINK;
  if (bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    return ErrnoStatus(errno, "subscribe to link changes (RTMGRP_LINK)");
  return LinkMonitor(std::move(sock));
}

absl::StatusOr<std::vector<LinkInfo>> LinkMonitor::ReadNewLinks() {
  std::vector<LinkInfo> links;
  alignas(nlmsghdr) char buf[32768];
  for (;;) {
    ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return links;
      // ENOBUFS: we fell behind and the kernel dropped announcements; the
      // agent's resync covers what was missed.
      if (errno == ENOBUFS) return links;
      return ErrnoStatus(errno, "read link changes");
    }
    int len = static_cast<int>(n);
    for (auto* msg = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(msg, static_cast<unsigned>(len));
         msg = NLMSG_NEXT(msg, len)) {
      if (msg->nlmsg_type == RTM_NEWLINK) links.push_back(ParseLink(msg));
    }
  }
}

}  // namespace stockade

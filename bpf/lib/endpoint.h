/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What an endpoint's record (maps/endpoint.h) says about a packet on its
 * interface. The full way (enforce.h, l2.h) and the established path
 * (established.h) ask these, so each check has one definition.
 */
#ifndef STOCKADE_BPF_LIB_ENDPOINT_H
#define STOCKADE_BPF_LIB_ENDPOINT_H

#include "maps.h"
#include "packet.h"

static __always_inline struct endpoint_info *endpoint_of(const struct packet *pkt)
{
	struct endpoint_key key = { .netns_cookie = pkt->netns_cookie, .ifindex = pkt->ifindex };

	return bpf_map_lookup_elem(&endpoints, &key);
}

/* The agent has not finished writing the endpoint's policy: fail closed. */
static __always_inline int endpoint_is_ready(const struct endpoint_info *ep)
{
	return !(ep->flags & ENDPOINT_F_NOT_READY);
}

static __always_inline int enforced_in(const struct endpoint_info *ep, __u8 dir)
{
	return ep->flags & (dir == DIR_INGRESS ? ENDPOINT_F_ENFORCE_INGRESS : ENDPOINT_F_ENFORCE_EGRESS);
}

/* The endpoint's own MAC, or any while it is not known. */
static __always_inline int mac_is_own(const __u8 mac[6], const struct endpoint_info *ep)
{
	return mac_is_zero(ep->mac) || mac_equal(mac, ep->mac);
}

/* addr: network order. An endpoint without an IPv4 address owns none. */
static __always_inline int ipv4_is_own(__u32 addr, const struct endpoint_info *ep)
{
	return ep->ipv4 != 0 && addr == ep->ipv4;
}

static __always_inline int ipv6_is_own(const __u8 addr[16], const struct endpoint_info *ep)
{
	return (!addr_is_zero(ep->ipv6) && addr_equal(addr, ep->ipv6)) ||
	       (!addr_is_zero(ep->ipv6_link_local) && addr_equal(addr, ep->ipv6_link_local));
}

#endif /* STOCKADE_BPF_LIB_ENDPOINT_H */

/* SPDX-License-Identifier: Apache-2.0 */
/* Ethernet, VLAN and ARP, and who may send what from a container. */
#ifndef STOCKADE_BPF_LIB_L2_H
#define STOCKADE_BPF_LIB_L2_H

#include "parse.h"
#include "endpoint.h"

/* Judges what parse_frame() found in the Ethernet and ARP headers. */
static __always_inline int check_l2(const struct packet *pkt, const struct flow *flow, const struct endpoint_info *ep,
				    __u8 dir)
{
	if ((pkt->vlan_offloaded || flow->vlan_tagged) && !(ep->flags & ENDPOINT_F_ALLOW_VLAN))
		return DROP_VLAN_TAGGED;
	if (dir == DIR_EGRESS && !mac_is_own(flow->eth_src, ep))
		return DROP_SPOOFED_SOURCE;
	return 0;
}

/*
 * ARP passes only with the endpoint's own sender addresses; an ARP probe
 * (sender 0.0.0.0, RFC 5227) claims nothing and passes too.
 */
static __always_inline int check_arp(const struct flow *flow, const struct endpoint_info *ep, __u8 dir)
{
	__u32 sender = *(const __u32 *)flow->tuple.saddr;

	if (dir != DIR_EGRESS)
		return 0;
	if (!mac_is_own(flow->arp_sender_mac, ep))
		return DROP_SPOOFED_SOURCE;
	if (sender == 0)
		return 0;
	if (!ipv4_is_own(sender, ep))
		return DROP_SPOOFED_SOURCE;
	return 0;
}

/*
 * What a container sends must carry its own source address. Neighbour
 * discovery follows the same rule: an advertisement names only the
 * endpoint's own addresses, a link-layer address option only its own MAC,
 * duplicate address detection may use ::, and router messages from a
 * container are dropped outright.
 */
static __always_inline int check_source(const struct flow *flow, const struct endpoint_info *ep)
{
	const struct flow_tuple *t = &flow->tuple;

	if (t->family == STOCKADE_AF_INET) {
		if (!ipv4_is_own(*(const __u32 *)t->saddr, ep))
			return DROP_SPOOFED_SOURCE;
		return 0;
	}
	if (flow->kind == FLOW_KIND_NEIGHBOUR) {
		if (flow->icmp_type == NDISC_ROUTER_ADVERTISEMENT || flow->icmp_type == NDISC_REDIRECT)
			return DROP_ND_ROUTER_MSG;
		if (flow->icmp_type == NDISC_NEIGHBOUR_ADVERTISEMENT && !ipv6_is_own(flow->nd_target, ep))
			return DROP_SPOOFED_SOURCE;
		/* The MAC its link-layer options name is the endpoint's, or (not
		 * known) the one it sends from. */
		if (flow->nd_lla_seen && !mac_equal(flow->nd_lla, mac_is_zero(ep->mac) ? flow->eth_src : ep->mac))
			return DROP_ND_OPTION;
		if (addr_is_zero(t->saddr) && flow->icmp_type != NDISC_NEIGHBOUR_ADVERTISEMENT)
			return 0;
	}
	if (!ipv6_is_own(t->saddr, ep))
		return DROP_SPOOFED_SOURCE;
	return 0;
}

#endif /* STOCKADE_BPF_LIB_L2_H */

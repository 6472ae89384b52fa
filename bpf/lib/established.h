/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The packet almost every packet is: IPv4 TCP or UDP of a flow conntrack4
 * already holds, under the endpoint's current policy. It is decided here on
 * a straight-line read of its headers and one lookup (none, for a repeat
 * this CPU's flow_cache slot holds), in a few cache lines of code, before
 * the full parser and enforce() run: live, between two
 * packets the whole network stack runs and evicts the program, so code the
 * packet does not need costs as much as work it does.
 *
 * Only a packet this path can prove established passes here, after the same
 * checks enforce() makes on it, through the same helpers (endpoint.h,
 * conntrack.h, tls.h): endpoint ready, no VLAN tag, the container's own MAC
 * and address on egress, a live entry under the current policy revision with
 * nothing for the TLS check to read. After the same checks, a packet of a flow
 * the policy denied a moment ago drops here too, the packet a flood is made
 * of. Anything else, and any check that fails, goes the full way, which
 * decides, counts and reports it.
 */
#ifndef STOCKADE_BPF_LIB_ESTABLISHED_H
#define STOCKADE_BPF_LIB_ESTABLISHED_H

#include "maps.h"
#include "endpoint.h"
#include "packet.h"
#include "parse.h"
#include "conntrack.h"
#include "record.h"
#include "tls.h"
#include "denied.h"
#include "flow_cache.h"

enum established_result {
	ESTABLISHED_PASSED = 0,      /* decided and counted: pass */
	ESTABLISHED_FULL_PATH = 1,   /* take the full way: not a packet this path reads, or its entry needs enforce() */
	ESTABLISHED_NOT_TRACKED = 2, /* conntrack4 has no entry: the full way, without a second lookup */
	ESTABLISHED_DROPPED = 3,     /* a remembered deny, counted and aggregated: drop */
};

/* What the straight-line read finds: the IPv4 header, and for TCP the flags
 * and whether the segment carries payload (tls_nothing_to_read_in_packet). */
struct established_headers {
	struct iphdr *ip;
	__u16 *ports; /* source, destination: network order */
	__u8 tcp_flags;
	__u8 tcp_payload;
};

/* An unfragmented IPv4 packet without options and its TCP or UDP header, with
 * the bounds the full parser checks; 0, or -1 for anything else. */
static __always_inline int established_read(const struct packet *pkt, struct established_headers *h)
{
	struct ethhdr *eth = pkt->data;
	struct iphdr *ip = PTR_ADD(eth, sizeof(*eth));
	__u32 total;

	if (!HAS_BYTES(ip, sizeof(*ip) + sizeof(struct udphdr), pkt->data_end))
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || pkt->vlan_offloaded)
		return -1;
	/* Version 4, no options; no fragment, first or later. */
	if (*(__u8 *)ip != 0x45 || (ip->frag_off & bpf_htons(0x3fff)))
		return -1;
	total = bpf_ntohs(ip->tot_len);
	if (total > pkt->len - sizeof(*eth))
		return -1;
	h->ip = ip;
	h->ports = PTR_ADD(ip, sizeof(*ip));
	if (ip->protocol == IPPROTO_UDP) {
		if (total < sizeof(*ip) + sizeof(struct udphdr))
			return -1;
		h->tcp_flags = 0;
		h->tcp_payload = 0;
		return 0;
	}
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = PTR_ADD(ip, sizeof(*ip));

		if (!HAS_BYTES(tcp, sizeof(*tcp), pkt->data_end) || tcp->doff < 5 ||
		    total < sizeof(*ip) + sizeof(*tcp))
			return -1;
		h->tcp_flags = ((__u8 *)tcp)[13];
		h->tcp_payload = total - sizeof(*ip) > tcp->doff * 4u;
		return 0;
	}
	return -1;
}

/* What check_l2() and check_source() ask of what a container sends, for
 * this kind of packet: its own MAC, its own IPv4 source. */
static __always_inline int established_sender_is_own(const struct packet *pkt, const struct iphdr *ip,
						     const struct endpoint_info *ep)
{
	const struct ethhdr *eth = pkt->data;

	return mac_is_own(eth->h_source, ep) && ipv4_is_own(ip->saddr, ep);
}

/*
 * A flood's packet: one of a flow the policy denied a moment ago (denied.h),
 * conntrack4 having missed. Between two of the flow's drop records it is
 * dropped, counted and aggregated here; when a record is due, or the entry
 * does not hold, the full way decides and reports it.
 */
static __always_inline enum established_result established_ipv4_denied(const struct packet *pkt,
									const struct endpoint_info *ep,
									const struct established_headers *h, __u8 dir)
{
	struct denied_flow_key key;
	struct denied_flow *e;
	__u64 now;

	denied_flow_key_ipv4(&key, pkt, h->ip->saddr, h->ip->daddr, h->ports[1], h->ip->protocol, dir);
	e = bpf_map_lookup_elem(&denied_flows, &key);
	if (!e)
		return ESTABLISHED_NOT_TRACKED;
	now = bpf_ktime_get_coarse_ns();
	if (!denied_flow_is_current(e, ep, now) || !event_suppressed(&e->agg, event_interval(), now))
		return ESTABLISHED_NOT_TRACKED;
	count_verdict(e->reason, dir, VERDICT_DROPPED, pkt->len);
	return ESTABLISHED_DROPPED;
}

static __always_inline enum established_result established_ipv4_decide(const struct packet *pkt,
									const struct endpoint_info *ep)
{
	struct established_headers h;
	struct flow_cache_slot *slot;
	struct ct4_key key;
	struct ct_entry *e;
	__u8 dir, protocol;
	__u64 now, jiffies;
	int src_is_a, is_reply;

	if (established_read(pkt, &h) < 0 || !endpoint_is_ready(ep))
		return ESTABLISHED_FULL_PATH;
	dir = packet_direction(pkt, ep->role);
	if (dir == DIR_EGRESS && !established_sender_is_own(pkt, h.ip, ep))
		return ESTABLISHED_FULL_PATH;
	protocol = h.ip->protocol;
	src_is_a = ct4_key_fill(&key, h.ip->saddr, h.ip->daddr, h.ports[0], h.ports[1], protocol, 0,
				pkt->netns_cookie, pkt->ifindex);
	slot = flow_cache_slot_of(&key);
	/* Two instructions: the verifier inlines it, where the clock is a call. */
	jiffies = bpf_jiffies64();
	if (flow_cache_passes(slot, &key, src_is_a, ep->policy_revision, h.tcp_flags, pkt->len, jiffies)) {
		count_verdict(REASON_NONE, dir, VERDICT_FORWARDED, pkt->len);
		return ESTABLISHED_PASSED;
	}
	e = bpf_map_lookup_elem(&conntrack4, &key);
	if (!e)
		return established_ipv4_denied(pkt, ep, &h, dir);
	now = bpf_ktime_get_coarse_ns();
	is_reply = ct_is_reply(e, src_is_a);
	/* Expired, revoked or not yet settled: enforce() knows what to do. */
	if (!ct_entry_is_live(e, h.tcp_flags, now) || !ct_entry_policy_is_current(e, ep) ||
	    !tls_nothing_to_read_in_packet(e, protocol, is_reply, h.tcp_payload))
		return ESTABLISHED_FULL_PATH;
	ct_account(e, protocol, h.tcp_flags, is_reply, pkt->len, now);
	flow_cache_fill(slot, &key, e, protocol, jiffies);
	count_verdict(REASON_NONE, dir, VERDICT_FORWARDED, pkt->len);
	return ESTABLISHED_PASSED;
}

#endif /* STOCKADE_BPF_LIB_ESTABLISHED_H */

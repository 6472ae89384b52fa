/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where a packet is decided. A packet of an established IPv4 flow passes in
 * established.h, and a repeat of a denied one drops there; every other
 * packet goes the full way: enforce() runs the stages in order and stops at
 * the first drop, and stockade_decide() is its single exit, which counts and
 * reports. TC and XDP share both.
 *
 * So verdicts are counted in two places, both with count_verdict(): here,
 * and in established.h for the packets it decides (a pass, or a deny whose
 * record is not due, so there is nothing to report). Routing those through
 * one exit cost 11-17% more verified instructions: the fast path counts
 * itself to stay short.
 */
#ifndef STOCKADE_BPF_LIB_ENFORCE_H
#define STOCKADE_BPF_LIB_ENFORCE_H

#include "maps.h"
#include "endpoint.h"
#include "packet.h"
#include "parse.h"
#include "l2.h"
#include "identity.h"
#include "policy.h"
#include "conntrack.h"
#include "fragments.h"
#include "record.h"
#include "denied.h"
#include "tls.h"
#include "established.h"

/* The peer's address for a packet in direction dir, as seen from the endpoint. */
static __always_inline const __u8 *remote_addr(const struct flow_tuple *t, __u8 dir)
{
	return dir == DIR_EGRESS ? t->daddr : t->saddr;
}

static __always_inline void decide_policy(const struct endpoint_info *ep, const struct flow *flow, __u8 dir,
					  const __u8 *remote, __u16 port, struct decision *d,
					  struct policy_result *res)
{
	struct policy_query q = {
		.local_identity = ep->identity,
		.remote_identity = identity_of(remote, flow->tuple.family),
		.direction = dir,
		.protocol = flow->tuple.protocol,
		.port = port,
		.enforced = !!enforced_in(ep, dir),
		/* The flow's destination port (port), not this packet's: a reply to
		 * a flow from VXLAN's port is no VXLAN. */
		.tunnel = dir == DIR_EGRESS &&
			  (ip_protocol_is_tunnel(flow->tuple.protocol) ||
			   (flow->tuple.protocol == IPPROTO_UDP && udp_port_is_tunnel(port))),
	};

	d->remote_identity = q.remote_identity;
	policy_decide(&q, res);
	d->rule_id = res->rule_id;
}

/*
 * An ICMP error that quotes a flow we track is part of that flow, if the
 * flow's verdict stands under the endpoint's current policy: a revoked flow
 * gets no errors through. A stale entry is confirmed (or cut) by the flow's
 * next packet, which is what an error answers.
 */
static __always_inline int icmp_error_is_related(const struct packet *pkt, const struct endpoint_info *ep,
						 const struct flow *flow, __u64 now)
{
	struct ct_flow_key key;
	struct ct_entry *e;

	if (flow->kind != FLOW_KIND_ICMP_ERROR || !flow->inner_valid)
		return 0;
	/* The error goes back to the quoted packet's sender; anything else is forged. */
	if (!addr_equal(flow->inner.saddr, flow->tuple.daddr))
		return 0;
	ct_key_for(&key, &flow->inner, pkt->netns_cookie, pkt->ifindex);
	e = ct_lookup(&key);
	return e && e->expires_ns > now && ct_entry_policy_is_current(e, ep);
}

/*
 * A flow allowed under an older policy revision is checked again against the
 * policy of its first packet's direction, so revoking an allow cuts it.
 */
static __always_inline int ct_recheck(const struct endpoint_info *ep, const struct flow *flow, struct ct_entry *e,
				      int is_reply, struct decision *d)
{
	struct policy_result res;
	__u8 dir = e->direction;
	int packet_is_origin_dir = !is_reply;
	/* The original packet's remote is this packet's remote if it went the same way. */
	const __u8 *remote = packet_is_origin_dir ? remote_addr(&flow->tuple, dir)
						  : remote_addr(&flow->tuple, dir == DIR_EGRESS ? DIR_INGRESS : DIR_EGRESS);

	decide_policy(ep, flow, dir, remote, e->policy_port, d, &res);
	if (res.reason != REASON_NONE && !res.audit && !(ep->flags & ENDPOINT_F_AUDIT))
		return res.reason;
	e->policy_revision = ep->policy_revision;
	e->rule_id = res.rule_id;
	e->flags = (e->flags & ~CT_F_TLS_REQUIRED) | (res.require_tls ? CT_F_TLS_REQUIRED : 0);
	return 0;
}

/* ct_untracked: established_ipv4_decide() found no conntrack entry for this
 * packet's flow a moment ago, so the lookup is not made twice. */
static __always_inline int enforce(struct packet *pkt, int parsed, const struct endpoint_info *ep,
				   struct flow *flow, int ct_untracked, struct decision *d)
{
	struct policy_result res;
	struct ct_flow_key flow_key;
	struct ct_entry *e;
	struct denied_flow_key denied_key;
	struct denied_flow *denied;
	__u64 now;
	int ret, src_is_a;
	__u8 dir = d->direction, ct_flags, tls_state;

	if (!endpoint_is_ready(ep))
		return DROP_ENDPOINT_NOT_READY;
	if (flow->has_ethernet) {
		ret = check_l2(pkt, flow, ep, dir);
		if (ret < 0)
			return ret;
	}
	if (parsed < 0)
		return parsed;
	if (flow->kind == FLOW_KIND_ARP)
		return check_arp(flow, ep, dir);

	if (dir == DIR_EGRESS) {
		ret = check_source(flow, ep);
		if (ret < 0)
			return ret;
	}
	/* Neighbour discovery and MLD keep the link working; they are not flows. */
	if (flow->kind == FLOW_KIND_NEIGHBOUR)
		return REASON_NONE;

	ret = fragment_track(flow);
	if (ret < 0)
		return ret;

	/* Lifetimes are seconds long: the coarse clock (a few ns) is precise
	 * enough, where the precise one costs ~20 ns a packet on a VM. */
	now = bpf_ktime_get_coarse_ns();
	d->now = now;
	if (icmp_error_is_related(pkt, ep, flow, now))
		return REASON_NONE;

	src_is_a = ct_key_for(&flow_key, &flow->tuple, pkt->netns_cookie, pkt->ifindex);
	e = ct_untracked ? NULL : ct_lookup(&flow_key);
	if (e && ct_entry_is_live(e, flow->tcp_flags, now)) {
		int is_reply = ct_is_reply(e, src_is_a);

		d->rule_id = e->rule_id;
		if (unlikely(!ct_entry_policy_is_current(e, ep))) {
			/* A revoked flow keeps its entry, so each of its packets, either
			 * way, is checked again and dropped. Without the entry the peer's
			 * next packet (a retransmission, say) in a direction that is not
			 * enforced would start the flow anew with the roles swapped, and
			 * the revoked side's packets would pass as its replies. */
			ret = ct_recheck(ep, flow, e, is_reply, d);
			if (ret < 0)
				return ret;
		}
		ret = REASON_NONE;
		if (unlikely(!tls_nothing_to_read_in_packet(e, flow->tuple.protocol, is_reply,
							    flow->payload_len != 0 || flow->fragment != FRAG_NONE))) {
			ret = tls_check_tracked(pkt, flow, ep, e, is_reply, d, now);
			if (ret < 0 && d->verdict != VERDICT_AUDIT)
				return ret;
		}
		ct_account(e, flow->tuple.protocol, flow->tcp_flags, is_reply, pkt->len, now);
		return ret;
	}

	/* A new flow, or one denied a moment ago. */
	denied_flow_key_for(&denied_key, pkt, flow, dir);
	denied = bpf_map_lookup_elem(&denied_flows, &denied_key);
	if (denied && denied_flow_is_current(denied, ep, now))
		return denied_flow_verdict(denied, d);
	decide_policy(ep, flow, dir, remote_addr(&flow->tuple, dir), flow->policy_port, d, &res);
	if (res.reason != REASON_NONE) {
		if (!res.audit && !(ep->flags & ENDPOINT_F_AUDIT)) {
			denied_flow_remember(&denied_key, denied, ep, &res, d, now);
			return res.reason;
		}
		d->verdict = VERDICT_AUDIT;
	}
	ct_flags = (d->verdict == VERDICT_AUDIT || res.audit ? CT_F_AUDIT : 0) |
		   (res.require_tls ? CT_F_TLS_REQUIRED : 0);
	tls_state = tls_classify(pkt, flow);
	ret = ct_create(&flow_key, src_is_a, flow, dir, res.rule_id, ep->policy_revision, ct_flags, tls_state,
			pkt->len, now);
	if (ret < 0)
		return ret;
	/* Reported only if the flow also passes (record_decision()): an audit
	 * or a TLS drop is reported as what it is. */
	d->new_flow = 1;
	return res.reason != REASON_NONE ? res.reason : tls_verdict(ep, ct_flags, tls_state, d);
}

/*
 * Decides, counts and reports one packet that parse_packet() has
 * read into *flow (parsed: its result), on the interface of endpoint ep
 * (NULL: unknown); returns its enum stockade_verdict.
 */
static __always_inline __u8 stockade_decide(struct packet *pkt, const struct endpoint_info *ep, struct flow *flow,
					    int parsed, int ct_untracked)
{
	struct decision d = { .verdict = VERDICT_FORWARDED };
	int reason;

	if (!ep) {
		/* Attached but unknown: fail closed. Without a role, assume a host veth. */
		d.direction = packet_direction(pkt, HOOK_ROLE_HOST_VETH);
		reason = DROP_ENDPOINT_UNKNOWN;
	} else {
		d.direction = packet_direction(pkt, ep->role);
		d.local_identity = ep->identity;
		reason = enforce(pkt, parsed, ep, flow, ct_untracked, &d);
	}
	d.reason = reason;
	if (reason != REASON_NONE && d.verdict != VERDICT_AUDIT)
		d.verdict = VERDICT_DROPPED;
	record_decision(pkt, flow, &d);
	return d.verdict;
}

/*
 * Both hooks' whole work on a packet that packet_from_skb() or
 * packet_from_xdp() has read from ctx: the established path, else the full
 * way. Returns whether the packet drops. is_xdp is a constant at each call,
 * so each program keeps only its own parser.
 */
static __always_inline int stockade_packet_drops(void *ctx, struct packet *pkt, int is_xdp)
{
	struct endpoint_info *ep = endpoint_of(pkt);
	enum established_result fast = ep ? established_ipv4_decide(pkt, ep) : ESTABLISHED_FULL_PATH;

	if (likely(fast == ESTABLISHED_PASSED))
		return 0;
	if (fast == ESTABLISHED_DROPPED)
		return 1;
	{
		/* Zeroed only here: the established path never needs it. */
		struct flow flow = {};
		int parsed = parse_packet(ctx, &flow, is_xdp);

		return stockade_decide(pkt, ep, &flow, parsed, fast == ESTABLISHED_NOT_TRACKED) == VERDICT_DROPPED;
	}
}

/* A TC program's whole work: pass means 'no objection', so later programs
 * in the chain still run. */
static __always_inline int stockade_tc_decide(struct __sk_buff *skb, enum hook_point hook)
{
	struct packet pkt;

	packet_from_skb(&pkt, skb, hook);
	return stockade_packet_drops(skb, &pkt, 0) ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

/* The same for XDP, in place of TC ingress. */
static __always_inline int stockade_xdp_decide(struct xdp_md *xdp)
{
	struct packet pkt;

	packet_from_xdp(&pkt, xdp);
	return stockade_packet_drops(xdp, &pkt, 1) ? XDP_DROP : XDP_PASS;
}

#endif /* STOCKADE_BPF_LIB_ENFORCE_H */

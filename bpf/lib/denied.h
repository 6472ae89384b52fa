/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Remembered denies (maps/denied_flows.h): a flow the policy denied drops
 * again on one hash lookup, until the endpoint's policy moves or a second
 * passes. Only policy denies are remembered; audits pass and are not.
 */
#ifndef STOCKADE_BPF_LIB_DENIED_H
#define STOCKADE_BPF_LIB_DENIED_H

#include "maps.h"
#include "parse.h"
#include "policy.h"
#include "record.h"

/* Short, so that a change the agent failed to announce (none is known) is
 * bounded; a re-decision a second per flow costs nothing measurable. */
#define DENIED_FLOW_LIFETIME NS_PER_SEC

/* Everything but the addresses, which the caller copies in. */
static __always_inline void denied_flow_key_fill(struct denied_flow_key *key, const struct packet *pkt, __u16 dport,
						 __u16 policy_port, __u8 protocol, __u8 family, __u8 dir)
{
	key->netns_cookie = pkt->netns_cookie;
	key->ifindex = pkt->ifindex;
	key->dport = dport;
	key->policy_port = policy_port;
	key->protocol = protocol;
	key->family = family;
	key->direction = dir;
	key->pad = 0;
	key->pad2 = 0;
}

static __always_inline void denied_flow_key_for(struct denied_flow_key *key, const struct packet *pkt,
						const struct flow *flow, __u8 dir)
{
	__builtin_memcpy(key->saddr, flow->tuple.saddr, 16);
	__builtin_memcpy(key->daddr, flow->tuple.daddr, 16);
	denied_flow_key_fill(key, pkt, flow->tuple.dport, flow->policy_port, flow->tuple.protocol, flow->tuple.family,
			     dir);
}

/* The same key for an IPv4 TCP or UDP packet, from its headers: the policy
 * port is the destination port, the addresses' last 12 bytes zero. */
static __always_inline void denied_flow_key_ipv4(struct denied_flow_key *key, const struct packet *pkt, __u32 saddr,
						 __u32 daddr, __u16 dport, __u8 protocol, __u8 dir)
{
	__builtin_memset(key->saddr, 0, 32);
	*(__u32 *)key->saddr = saddr;
	*(__u32 *)key->daddr = daddr;
	denied_flow_key_fill(key, pkt, dport, dport, protocol, STOCKADE_AF_INET, dir);
}

static __always_inline int denied_flow_is_current(const struct denied_flow *e, const struct endpoint_info *ep,
						  __u64 now)
{
	return e->expires_ns > now && e->policy_revision == ep->policy_revision &&
	       e->local_identity == ep->identity && e->endpoint_flags == ep->flags;
}

/* The remembered verdict of a current entry, with what its drop event reports;
 * the entry aggregates the flow's events. */
static __always_inline int denied_flow_verdict(struct denied_flow *e, struct decision *d)
{
	d->rule_id = e->rule_id;
	d->remote_identity = e->remote_identity;
	d->agg = &e->agg;
	return e->reason;
}

/*
 * Remembers a policy deny. A stale entry of the same flow is brought up to
 * date in place, so its event aggregation carries on. If the map cannot take
 * the entry, the packet drops all the same: only the next one pays the
 * decision again.
 */
static __always_inline void denied_flow_remember(const struct denied_flow_key *key, struct denied_flow *stale,
						 const struct endpoint_info *ep, const struct policy_result *res,
						 struct decision *d, __u64 now)
{
	struct denied_flow fresh = {
		.expires_ns = now + DENIED_FLOW_LIFETIME,
		.policy_revision = ep->policy_revision,
		.local_identity = ep->identity,
		.endpoint_flags = ep->flags,
		.remote_identity = d->remote_identity,
		.rule_id = res->rule_id,
		.reason = res->reason,
		.agg = { .last_emit_ns = now },
	};

	if (stale) {
		/* In place, so that the flow's event aggregation carries on. A CPU
		 * reading it meanwhile may pair the old reason with the new
		 * revision: a drop either way, reported once under the old rule. */
		stale->policy_revision = fresh.policy_revision;
		stale->local_identity = fresh.local_identity;
		stale->endpoint_flags = fresh.endpoint_flags;
		stale->remote_identity = fresh.remote_identity;
		stale->rule_id = fresh.rule_id;
		stale->reason = fresh.reason;
		stale->expires_ns = fresh.expires_ns;
		d->agg = &stale->agg;
		return;
	}
	/* The first drop of a flow is reported through the event_agg map, as
	 * any other drop: the entry only starts its own interval. */
	bpf_map_update_elem(&denied_flows, key, &fresh, BPF_ANY);
}

#endif /* STOCKADE_BPF_LIB_DENIED_H */

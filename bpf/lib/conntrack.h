/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection tracking: a flow's policy is decided on its first packet; later
 * packets and replies cost one LRU hash lookup, in the map of the flow's family.
 */
#ifndef STOCKADE_BPF_LIB_CONNTRACK_H
#define STOCKADE_BPF_LIB_CONNTRACK_H

#include "maps.h"
#include "parse.h"

#define CT_LIFETIME_NON_TCP (60 * NS_PER_SEC)
#define CT_LIFETIME_TCP_SYN (60 * NS_PER_SEC)
#define CT_LIFETIME_TCP_ESTABLISHED (6 * 3600 * NS_PER_SEC)
#define CT_LIFETIME_TCP_CLOSED (10 * NS_PER_SEC)

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* A flow's key, for the map of its family: IPv4 in conntrack4, whose key
 * hashes in half the time, the rest in conntrack (maps/conntrack.h). */
struct ct_flow_key {
	union {
		struct ct_key wide;
		struct ct4_key v4;
	};
	__u8 is_v4;
};

/* An IPv4 flow's key in canonical order; returns whether the source is side
 * a. The order is addr_port_less()'s on the addresses as ct_key_for() holds
 * them (IPv4 in the first word, the rest zero), so both maps order a flow's
 * sides alike and an entry keeps its meaning from one to the other. */
static __always_inline int ct4_key_fill(struct ct4_key *k, __u32 saddr, __u32 daddr, __u16 sport, __u16 dport,
					__u8 protocol, __u8 icmp_echo, __u64 netns_cookie, __u32 ifindex)
{
	int src_is_a = saddr != daddr ? saddr < daddr : sport < dport;

	k->netns_cookie = netns_cookie;
	k->addr_a = src_is_a ? saddr : daddr;
	k->addr_b = src_is_a ? daddr : saddr;
	k->port_a = src_is_a ? sport : dport;
	k->port_b = src_is_a ? dport : sport;
	k->ifindex = ifindex;
	k->protocol = protocol;
	k->icmp_echo = icmp_echo;
	k->pad = 0;
	k->pad2 = 0;
	return src_is_a;
}

/* Fills the key in canonical order for the endpoint (netns_cookie, ifindex);
 * returns whether the tuple's source is side a. */
static __always_inline int ct_key_for(struct ct_flow_key *key, const struct flow_tuple *t, __u64 netns_cookie,
				      __u32 ifindex)
{
	int src_is_a;

	key->is_v4 = t->family == STOCKADE_AF_INET;
	if (key->is_v4)
		return ct4_key_fill(&key->v4, *(const __u32 *)t->saddr, *(const __u32 *)t->daddr, t->sport, t->dport,
				    t->protocol, t->icmp_echo, netns_cookie, ifindex);
	src_is_a = addr_port_less(t->saddr, t->sport, t->daddr, t->dport);
	if (src_is_a) {
		__builtin_memcpy(key->wide.addr_a, t->saddr, 16);
		__builtin_memcpy(key->wide.addr_b, t->daddr, 16);
		key->wide.port_a = t->sport;
		key->wide.port_b = t->dport;
	} else {
		__builtin_memcpy(key->wide.addr_a, t->daddr, 16);
		__builtin_memcpy(key->wide.addr_b, t->saddr, 16);
		key->wide.port_a = t->dport;
		key->wide.port_b = t->sport;
	}
	key->wide.ifindex = ifindex;
	key->wide.netns_cookie = netns_cookie;
	key->wide.protocol = t->protocol;
	key->wide.family = t->family;
	key->wide.icmp_echo = t->icmp_echo;
	key->wide.pad = 0;
	key->wide.pad2 = 0;
	return src_is_a;
}

/*
 * clang merges a call on one map in one branch with the same call on another
 * map in the other into one call on either; the verifier cannot inline a
 * lookup whose map it does not know, and the helper's indirect call costs
 * more than the smaller key saves. An empty asm on the result keeps the calls
 * apart.
 */
#define CT_KEEP_APART(v) asm volatile("" : "+r"(v))

static __always_inline struct ct_entry *ct_lookup(const struct ct_flow_key *key)
{
	struct ct_entry *e;

	if (key->is_v4) {
		e = bpf_map_lookup_elem(&conntrack4, &key->v4);
		CT_KEEP_APART(e);
		return e;
	}
	return bpf_map_lookup_elem(&conntrack, &key->wide);
}

/* tcp_flags: the packet's, 0 if it is not TCP. */
static __always_inline int ct_entry_is_live(const struct ct_entry *e, __u8 tcp_flags, __u64 now)
{
	if (e->expires_ns <= now)
		return 0;
	/* A new SYN on a closed flow's tuple is a new connection: decide it again. */
	if (e->tcp_state == CT_TCP_CLOSED && (tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		return 0;
	return 1;
}

/* Whether this packet (src_is_a: its source is the key's side a) goes
 * against the direction of the flow's first packet. */
static __always_inline int ct_is_reply(const struct ct_entry *e, int src_is_a)
{
	return src_is_a != !!(e->flags & CT_F_ORIGIN_IS_A);
}

/* The entry's verdict was made under the endpoint's current policy. */
static __always_inline int ct_entry_policy_is_current(const struct ct_entry *e, const struct endpoint_info *ep)
{
	return e->policy_revision == ep->policy_revision;
}

static __always_inline __u64 ct_lifetime(__u8 tcp_state)
{
	switch (tcp_state) {
	case CT_TCP_NONE:
		return CT_LIFETIME_NON_TCP;
	case CT_TCP_SYN_SENT:
		return CT_LIFETIME_TCP_SYN;
	case CT_TCP_CLOSED:
		return CT_LIFETIME_TCP_CLOSED;
	}
	return CT_LIFETIME_TCP_ESTABLISHED;
}

static __always_inline __u8 ct_next_tcp_state(struct ct_entry *e, __u8 tcp_flags, int is_reply)
{
	if (tcp_flags & TCP_FLAG_RST)
		return CT_TCP_CLOSED;
	if (tcp_flags & TCP_FLAG_FIN) {
		e->flags |= is_reply ? CT_F_FIN_REPLY : CT_F_FIN_ORIGIN;
		if ((e->flags & (CT_F_FIN_REPLY | CT_F_FIN_ORIGIN)) == (CT_F_FIN_REPLY | CT_F_FIN_ORIGIN))
			return CT_TCP_CLOSED;
		return CT_TCP_CLOSING;
	}
	if (e->tcp_state == CT_TCP_SYN_SENT && is_reply)
		return CT_TCP_ESTABLISHED;
	return e->tcp_state;
}

/* Per-packet bookkeeping on a live entry. Counters are per flow and not
 * atomic: two CPUs on one flow may lose an increment, which a statistic can bear. */
static __always_inline void ct_account(struct ct_entry *e, __u8 protocol, __u8 tcp_flags, int is_reply, __u32 len,
				       __u64 now)
{
	__u8 state = e->tcp_state;
	__u64 expires;

	e->packets++;
	e->bytes += len;
	if (is_reply && !(e->flags & CT_F_SEEN_REPLY))
		e->flags |= CT_F_SEEN_REPLY;
	if (protocol == IPPROTO_TCP) {
		e->tcp_flags_seen |= tcp_flags;
		state = ct_next_tcp_state(e, tcp_flags, is_reply);
	}
	expires = now + ct_lifetime(state);
	/* Refresh at most once a second: a write per packet would bounce the
	 * entry's cache line between CPUs for nothing. */
	if (state != e->tcp_state || expires > e->expires_ns + NS_PER_SEC) {
		e->tcp_state = state;
		e->expires_ns = expires;
	}
}

static __always_inline int ct_create(const struct ct_flow_key *key, int src_is_a, const struct flow *flow, __u8 dir,
				     __u32 rule_id, __u32 revision, __u8 flags, __u8 tls_state, __u32 len, __u64 now)
{
	struct ct_entry e = {
		.packets = 1,
		.bytes = len,
		.rule_id = rule_id,
		.policy_revision = revision,
		.direction = dir,
		.flags = (src_is_a ? CT_F_ORIGIN_IS_A : 0) | flags,
		.policy_port = flow->policy_port,
		.tls_state = tls_state,
	};
	long err;

	if (flow->tuple.protocol == IPPROTO_TCP) {
		e.tcp_flags_seen = flow->tcp_flags;
		/* A flow first seen mid-stream (after an upgrade, say) is taken as established. */
		if ((flow->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
			e.tcp_state = CT_TCP_SYN_SENT;
		else
			e.tcp_state = CT_TCP_ESTABLISHED;
		e.tcp_state = ct_next_tcp_state(&e, flow->tcp_flags, 0);
	}
	e.expires_ns = now + ct_lifetime(e.tcp_state);
	if (key->is_v4) {
		err = bpf_map_update_elem(&conntrack4, &key->v4, &e, BPF_ANY);
		CT_KEEP_APART(err);
	} else {
		err = bpf_map_update_elem(&conntrack, &key->wide, &e, BPF_ANY);
	}
	if (err)
		return DROP_CT_MAP_FULL;
	return 0;
}

#endif /* STOCKADE_BPF_LIB_CONNTRACK_H */

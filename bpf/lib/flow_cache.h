/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The flows this CPU passed a moment ago (maps/flow_cache.h). Live, an
 * established packet's conntrack4 lookup hashes a 32-byte key into a table
 * of 70 MB, reads the clock and writes the entry; a slot of this CPU's
 * array, found by a multiply and read by four compares, costs a fraction.
 *
 * A slot passes only what the entry would pass in its place, as the entry
 * would: the packet of the slot's flow, under the policy revision the entry
 * was made under, that changes nothing in the entry but its counts (no SYN,
 * FIN or RST; not the first reply, which the entry must mark), while the
 * entry cannot have expired (at most STOCKADE_FLOW_CACHE_TICKS since the
 * entry passed a packet of it here). Any other packet goes to the entry,
 * which fills or takes the slot again.
 *
 * What a slot cannot see: an entry deleted from outside (the agent, or the
 * LRU evicting it under pressure) passes the flow's packets here for the
 * rest of the slot's second. The agent revokes flows by the revision, which
 * the slot checks.
 */
#ifndef STOCKADE_BPF_LIB_FLOW_CACHE_H
#define STOCKADE_BPF_LIB_FLOW_CACHE_H

#include "maps.h"
#include "conntrack.h"
#include "tls.h"

static __always_inline struct flow_cache_slot *flow_cache_slot_of(const struct ct4_key *key)
{
	/* Multiplicative hashing: the top bits of the product mix every bit of
	 * what goes in; both directions of a flow share the key, so the slot. */
	__u32 mixed = key->addr_a ^ key->addr_b ^ ((__u32)key->port_a << 16 | key->port_b) ^ key->ifindex ^ key->protocol;
	__u32 index = (mixed * 0x9e3779b1u) >> (32 - 8);

	STOCKADE_ABI_ASSERT(STOCKADE_FLOW_CACHE_SLOTS == 1 << 8, "the index takes 8 bits of the hash");
	return bpf_map_lookup_elem(&flow_cache, &index);
}

static __always_inline int flow_cache_key_equal(const struct ct4_key *a, const struct ct4_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	STOCKADE_ABI_ASSERT(sizeof(*a) == 4 * sizeof(*x), "four words");
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* Whether the slot passes this packet of the flow with key; if so, counted in the slot. */
static __always_inline int flow_cache_passes(struct flow_cache_slot *slot, const struct ct4_key *key, int src_is_a,
					     __u32 policy_revision, __u8 tcp_flags, __u32 len, __u64 jiffies)
{
	if (!slot || (tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST)) ||
	    jiffies - slot->filled_jiffies >= STOCKADE_FLOW_CACHE_TICKS || slot->policy_revision != policy_revision ||
	    !flow_cache_key_equal(&slot->key, key))
		return 0;
	if (src_is_a != slot->origin_is_a && !slot->reply_seen)
		return 0;
	slot->tcp_flags_seen |= tcp_flags;
	slot->packets++;
	slot->bytes += len;
	return 1;
}

static __always_inline void flow_cache_flush_into(struct flow_cache_slot *slot, struct ct_entry *e)
{
	e->tcp_flags_seen |= slot->tcp_flags_seen;
	e->packets += slot->packets;
	e->bytes += slot->bytes;
}

/*
 * After entry e passed a packet of the flow with key: the slot moves what it
 * counted into its entry and stands for this one, if the slot is free to
 * take (empty, this flow's, or another's whose time is over) and nothing
 * but a SYN, FIN, RST or first reply can change the entry: the TLS check
 * has seen the client's first payload. A live slot of another flow stays,
 * so flows that share a slot do not evict each other a packet each.
 */
static __always_inline void flow_cache_fill(struct flow_cache_slot *slot, const struct ct4_key *key, struct ct_entry *e,
					    __u8 protocol, __u64 jiffies)
{
	if (!slot || !tls_nothing_to_read_in_flow(e, protocol))
		return;
	if (flow_cache_key_equal(&slot->key, key)) {
		flow_cache_flush_into(slot, e);
	} else if (jiffies - slot->filled_jiffies < STOCKADE_FLOW_CACHE_TICKS) {
		return;
	} else if (slot->packets) {
		struct ct_entry *previous = bpf_map_lookup_elem(&conntrack4, &slot->key);

		if (previous)
			flow_cache_flush_into(slot, previous);
	}
	slot->key = *key;
	slot->filled_jiffies = jiffies;
	slot->policy_revision = e->policy_revision;
	slot->origin_is_a = !!(e->flags & CT_F_ORIGIN_IS_A);
	slot->reply_seen = !!(e->flags & CT_F_SEEN_REPLY);
	slot->tcp_flags_seen = 0;
	slot->packets = 0;
	slot->bytes = 0;
}

#endif /* STOCKADE_BPF_LIB_FLOW_CACHE_H */

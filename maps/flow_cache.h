/* SPDX-License-Identifier: Apache-2.0 */
/*
 * flow_cache: per CPU, a direct-mapped array of the established IPv4 flows
 * this CPU passed a moment ago (bpf/lib/flow_cache.h). A slot stands for one
 * conntrack4 entry, as that entry was under one policy revision, for at most
 * STOCKADE_FLOW_CACHE_TICKS jiffies: a packet that finds its flow's slot
 * passes without the conntrack4 lookup, the clock and the entry's writes.
 *
 * The slot counts what it passed; the next packet that goes to the entry
 * (or the flow that takes the slot over) moves the counts into it. Readers
 * of conntrack add what is still in slots (userspace/conntrack).
 */
#ifndef STOCKADE_MAPS_FLOW_CACHE_H
#define STOCKADE_MAPS_FLOW_CACHE_H

#include "abi_common.h"
#include "conntrack.h"

#define STOCKADE_FLOW_CACHE_SLOTS 256 /* a power of 2 */
/* A second at HZ=100, the lowest HZ Linux has; less at any other. Far below
 * every conntrack lifetime (10 s at the least), so an entry a slot stands
 * for never expires while the slot holds. */
#define STOCKADE_FLOW_CACHE_TICKS 100

struct flow_cache_slot {
	struct ct4_key key;     /* the conntrack4 entry's */
	__u64 filled_jiffies;   /* when the slot took the entry; 0: never */
	__u32 policy_revision;  /* the entry's, which was the endpoint's then */
	__u8 origin_is_a;       /* the entry's CT_F_ORIGIN_IS_A */
	__u8 reply_seen;        /* the entry's CT_F_SEEN_REPLY */
	/* Passed here, not yet in the entry: */
	__u8 tcp_flags_seen;
	__u8 pad;
	__u64 packets;
	__u64 bytes;
};
STOCKADE_ABI_SIZE(struct flow_cache_slot, 64);
STOCKADE_ABI_OFFSET(struct flow_cache_slot, filled_jiffies, 32);
STOCKADE_ABI_OFFSET(struct flow_cache_slot, policy_revision, 40);
STOCKADE_ABI_OFFSET(struct flow_cache_slot, packets, 48);

#endif /* STOCKADE_MAPS_FLOW_CACHE_H */

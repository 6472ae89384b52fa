/* SPDX-License-Identifier: Apache-2.0 */
/*
 * denied_flows: flows the policy denied a moment ago, so that a flood of
 * them costs a hash lookup a packet instead of a policy decision (ipcache
 * trie, policy lookups, event aggregation map). Looked up only after the
 * conntrack lookup missed, so it never shadows a tracked flow or its replies.
 *
 * Its own LRU, not conntrack: denied tuples are the attacker's to choose, and
 * in the conntrack LRU a spray of them would evict established flows. Here
 * it evicts only other remembered denies, and a forgotten deny costs one
 * policy decision, never a verdict.
 *
 * The key leaves the source port out, as the event aggregation key does: the
 * policy never reads it, so a flood from random ports is one entry. The
 * entry holds the event aggregation of its flow (see bpf/lib/record.h), so
 * it has the event_agg map's capacity: an evicted entry loses the count of
 * drops it had not reported yet (the counters keep every drop).
 */
#ifndef STOCKADE_MAPS_DENIED_FLOWS_H
#define STOCKADE_MAPS_DENIED_FLOWS_H

#include "abi_common.h"
#include "events.h"

#define STOCKADE_DENIED_FLOWS_MAX 65536

struct denied_flow_key {
	__u8 saddr[16];       /* network order */
	__u8 daddr[16];       /* network order */
	__u64 netns_cookie;   /* host order; the endpoint interface's namespace */
	__u32 ifindex;        /* host order; the endpoint interface */
	__u16 dport;          /* network order; ICMP echo: the identifier */
	__u16 policy_port;    /* network order; what policy matched: dport or ICMP type */
	__u8 protocol;        /* IPPROTO_* */
	__u8 family;          /* STOCKADE_AF_* */
	__u8 direction;       /* enum stockade_direction */
	__u8 pad;             /* must be zero */
	__u32 pad2;           /* must be zero */
};
STOCKADE_ABI_SIZE(struct denied_flow_key, 56);
STOCKADE_ABI_OFFSET(struct denied_flow_key, netns_cookie, 32);
STOCKADE_ABI_OFFSET(struct denied_flow_key, ifindex, 40);
STOCKADE_ABI_OFFSET(struct denied_flow_key, protocol, 48);

struct denied_flow {
	/*
	 * The verdict holds while all four match the endpoint record and the
	 * clock is before expires_ns. The agent bumps the revision on any
	 * change of the endpoint's policy or of the ipcache (a new address
	 * too: it was the world a moment ago).
	 */
	__u64 expires_ns;            /* bpf_ktime_get_coarse_ns() clock */
	__u32 policy_revision;       /* the endpoint's, when decided */
	__u32 local_identity;        /* the endpoint's, when decided */
	__u32 endpoint_flags;        /* the endpoint's, when decided */
	__u32 remote_identity;       /* reported in the drop event */
	__u32 rule_id;               /* the deny rule, 0: no rule matched */
	__s32 reason;                /* enum stockade_drop_reason */
	struct event_agg_value agg;  /* this flow's drop records */
};
STOCKADE_ABI_SIZE(struct denied_flow, 48);
STOCKADE_ABI_OFFSET(struct denied_flow, policy_revision, 8);
STOCKADE_ABI_OFFSET(struct denied_flow, reason, 28);
STOCKADE_ABI_OFFSET(struct denied_flow, agg, 32);

#endif /* STOCKADE_MAPS_DENIED_FLOWS_H */

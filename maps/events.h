/* SPDX-License-Identifier: Apache-2.0 */
/*
 * events: one BPF ring buffer of drop (and audit) records, and of new-flow
 * records: VERDICT_FORWARDED, reason REASON_NONE, made when the datapath
 * creates the conntrack entry of an allowed flow (its first packet: source
 * the client, destination the server port). At most one record per
 * (interface, direction, reason, protocol, source, destination, destination
 * port) per config.event_interval_ns; a record carries how many drops (or new
 * flows) it stands for. The source port is left out on purpose: a flood from
 * random ports is one flow for an operator.
 */
#ifndef STOCKADE_MAPS_EVENTS_H
#define STOCKADE_MAPS_EVENTS_H

#include "abi_common.h"

/* 16 MiB: ~190k records, about 0.2 s of a million drops a second without
 * aggregation; enough for the agent to be off CPU for a while on a busy host. */
#define STOCKADE_EVENTS_RINGBUF_BYTES (16u << 20)
#define STOCKADE_EVENT_AGG_MAX 65536

struct drop_event {
	__u64 timestamp_ns;    /* bpf_ktime_get_ns() clock (CLOCK_MONOTONIC) */
	__u32 ifindex;         /* host order */
	__u32 rule_id;         /* host order; the deciding rule (forwarded: the allowing one); 0: none */
	__u32 local_identity;  /* host order */
	__u32 remote_identity; /* host order */
	__u32 count;           /* host order; drops (forwarded: new flows) this record stands for, >= 1 */
	__u32 packet_length;   /* host order; of the last packet */
	__s32 reason;          /* enum stockade_drop_reason */
	__u8 verdict;          /* enum stockade_verdict */
	__u8 direction;        /* enum stockade_direction */
	__u8 family;           /* STOCKADE_AF_*, 0 for non-IP */
	__u8 protocol;         /* IPPROTO_*; 0 for ARP (sender and target in saddr/daddr) */
	__u8 saddr[16];        /* network order */
	__u8 daddr[16];        /* network order */
	__u16 sport;           /* network order; ICMP: type */
	__u16 dport;           /* network order; ICMP: code */
	__u8 tcp_flags;        /* TCP flags byte */
	__u8 pad[3];
};
STOCKADE_ABI_SIZE(struct drop_event, 80);
STOCKADE_ABI_OFFSET(struct drop_event, reason, 32);
STOCKADE_ABI_OFFSET(struct drop_event, saddr, 40);
STOCKADE_ABI_OFFSET(struct drop_event, sport, 72);

struct event_agg_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 ifindex;
	__s32 reason;
	__u16 dport;
	__u8 direction;
	__u8 protocol;
};
STOCKADE_ABI_SIZE(struct event_agg_key, 44);

struct event_agg_value {
	__u64 last_emit_ns;
	__u64 suppressed; /* drops since the last record */
};
STOCKADE_ABI_SIZE(struct event_agg_value, 16);

/*
 * flow_seen: per CPU, the keys of the new-flow records this CPU made lately,
 * by hash (bpf/lib/record.h). A key it has not seen within the interval is
 * reported at once, without an event_agg entry; a repeat is aggregated there.
 * One entry (index 0) of STOCKADE_FLOW_SEEN_SLOTS slots, a slot a hash.
 */
#define STOCKADE_FLOW_SEEN_SLOTS 2048

struct flow_seen_slot {
	__u32 hash; /* of the event_agg_key; 0 with at 0: empty */
	__u32 at;   /* bpf_ktime_get_coarse_ns() >> 20 (~1 ms) of the key's latest record or repeat */
};
STOCKADE_ABI_SIZE(struct flow_seen_slot, 8);

struct flow_seen_table {
	struct flow_seen_slot slots[STOCKADE_FLOW_SEEN_SLOTS];
};
STOCKADE_ABI_SIZE(struct flow_seen_table, 8 * STOCKADE_FLOW_SEEN_SLOTS);

#endif /* STOCKADE_MAPS_EVENTS_H */

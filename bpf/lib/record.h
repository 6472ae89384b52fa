/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The full way's exit path: every packet's verdict is counted, and every drop
 * and audit is reported, aggregated per flow and reason; so is every new flow
 * that passes (d->new_flow: enforce() created its conntrack entry), unless
 * the agent turned flow records off. established.h counts the packets it
 * decides with the same count_verdict() (enforce.h) and reports nothing: a
 * flow's record is made once, when its entry is.
 */
#ifndef STOCKADE_BPF_LIB_RECORD_H
#define STOCKADE_BPF_LIB_RECORD_H

#include "maps.h"
#include "parse.h"

struct decision {
	int reason;    /* REASON_NONE or a drop reason */
	__u32 rule_id;
	__u32 local_identity;
	__u32 remote_identity;
	__u8 verdict;  /* enum stockade_verdict */
	__u8 direction;
	__u8 new_flow; /* this packet created its flow's conntrack entry */
	/* Where this drop's records are aggregated: a remembered deny's entry
	 * (bpf/lib/denied.h), or NULL for the event_agg map. */
	struct event_agg_value *agg;
	/* bpf_ktime_get_coarse_ns() if the decision read it, else 0: a second
	 * read was ~3% of a remembered deny's time in a live flood (perf). */
	__u64 now;
};

/* Adds one packet of len bytes (or, for EVENT_LOST, len lost records) to the
 * metrics counter of this reason, direction and verdict. */
static __always_inline void count_verdict(int reason, __u8 direction, __u8 verdict, __u32 len)
{
	__u32 index = stockade_metrics_index(reason, direction, verdict);
	struct metrics_value *m = bpf_map_lookup_elem(&metrics, &index);

	if (m) {
		m->packets++;
		m->bytes += len;
	}
}

static __always_inline __u64 event_interval(void)
{
	struct stockade_config *cfg = config_get();

	return cfg ? cfg->event_interval_ns : STOCKADE_DEFAULT_EVENT_INTERVAL_NS;
}

/* Whether a forwarded packet is reported: only the one that created its
 * flow's entry, and only while flow records are on (maps/config.h). */
static __always_inline int flow_record_wanted(const struct decision *d)
{
	struct stockade_config *cfg;

	if (!d->new_flow)
		return 0;
	cfg = config_get();
	return !cfg || !(cfg->flags & STOCKADE_CONFIG_F_NO_FLOW_RECORDS);
}

/* A drop inside its flow's interval: counted into the next record, 1;
 * or 0, and nothing done, when a record is due (always, for interval 0). */
static __always_inline int event_suppressed(struct event_agg_value *agg, __u64 interval, __u64 now)
{
	if (now - agg->last_emit_ns >= interval)
		return 0;
	__sync_fetch_and_add(&agg->suppressed, 1);
	return 1;
}

/* Returns how many drops the record should stand for, or 0 to stay silent. */
static __always_inline __u64 event_aggregate(struct event_agg_value *agg, __u64 interval, __u64 now)
{
	__u64 stands_for;

	if (event_suppressed(agg, interval, now))
		return 0;
	stands_for = __sync_lock_test_and_set(&agg->suppressed, 0) + 1;
	agg->last_emit_ns = now;
	return stands_for;
}

/* A multiplicative hash of the key's 11 words; any two keys may collide,
 * which costs only the aggregation's price (below), never a count. */
static __always_inline __u32 event_agg_key_hash(const struct event_agg_key *key)
{
	const __u32 *word = (const __u32 *)key;
	__u32 h = 0x9e3779b9;
	int i;

#pragma unroll
	for (i = 0; i < sizeof(*key) / 4; i++) {
		h = (h ^ word[i]) * 0x85ebca6b;
		h ^= h >> 13;
	}
	return h;
}

/*
 * Whether a new flow's record key, which has no event_agg entry, is new on
 * this CPU: not seen within the interval. Such a record is reported at once,
 * counting 1, and no entry is made: inserting one (an LRU insert into a full
 * map) cost as much as the conntrack insert the flow had just paid, +75% a
 * new flow from a new client, for a key that mostly never repeats
 * (docs/benchmarks.md). A repeat gets its entry and is aggregated there as a
 * drop is, so a connection storm from one client has two records in its
 * first interval, then one. A key with an entry always takes it, so no
 * count waits in an entry that is not looked at.
 */
static __always_inline int flow_key_is_new_here(const struct event_agg_key *key, __u64 interval, __u64 now)
{
	__u32 zero = 0, h, at;
	struct flow_seen_table *seen = bpf_map_lookup_elem(&flow_seen, &zero);
	struct flow_seen_slot *slot;
	int is_new;

	if (!seen)
		return 0;
	/* After the lookup, not before: held across the call, the hash and the
	 * time were spilled, and bench_new_flow's frame with its option parser's
	 * went 16 bytes over the verifier's 512. */
	h = event_agg_key_hash(key);
	at = (__u32)(now >> 20);
	slot = &seen->slots[h & (STOCKADE_FLOW_SEEN_SLOTS - 1)];
	/* ~1 ms units wrap after ~50 days: a slot untouched that long may pass
	 * for a recent sighting, which costs an event_agg entry, never a count. */
	is_new = slot->hash != h || at - slot->at > (__u32)(interval >> 20);
	slot->hash = h;
	slot->at = at;
	return is_new;
}

static __always_inline __u64 event_stands_for(const struct packet *pkt, const struct flow *flow,
					      const struct decision *d, __u64 now)
{
	__u64 interval = event_interval();
	struct event_agg_key key = {
		.ifindex = pkt->ifindex,
		.reason = d->reason,
		.dport = flow->tuple.dport,
		.direction = d->direction,
		.protocol = flow->tuple.protocol,
	};
	struct event_agg_value *agg;

	if (interval == 0)
		return 1;
	if (d->agg)
		return event_aggregate(d->agg, interval, now);
	__builtin_memcpy(key.saddr, flow->tuple.saddr, 16);
	__builtin_memcpy(key.daddr, flow->tuple.daddr, 16);
	agg = bpf_map_lookup_elem(&event_agg, &key);
	if (agg)
		return event_aggregate(agg, interval, now);
	if (d->verdict == VERDICT_FORWARDED && flow_key_is_new_here(&key, interval, now))
		return 1;
	{
		struct event_agg_value fresh = { .last_emit_ns = now };

		/* Failing to remember only costs an extra record, never a verdict. */
		bpf_map_update_elem(&event_agg, &key, &fresh, BPF_ANY);
	}
	return 1;
}

static __always_inline void emit_event(const struct packet *pkt, const struct flow *flow, const struct decision *d)
{
	struct drop_event *ev;
	/* An interval check needs no more than the coarse clock. */
	__u64 now = d->now ? d->now : bpf_ktime_get_coarse_ns();
	__u64 stands_for = event_stands_for(pkt, flow, d, now);

	if (stands_for == 0)
		return;

	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		count_verdict(EVENT_LOST, d->direction, d->verdict, (__u32)stands_for);
		return;
	}
	ev->timestamp_ns = bpf_ktime_get_ns();
	ev->ifindex = pkt->ifindex;
	ev->rule_id = d->rule_id;
	ev->local_identity = d->local_identity;
	ev->remote_identity = d->remote_identity;
	ev->count = stands_for > 0xffffffffull ? 0xffffffffu : (__u32)stands_for;
	ev->packet_length = pkt->len;
	ev->reason = d->reason;
	ev->verdict = d->verdict;
	ev->direction = d->direction;
	ev->family = flow->tuple.family;
	ev->protocol = flow->tuple.protocol;
	__builtin_memcpy(ev->saddr, flow->tuple.saddr, 16);
	__builtin_memcpy(ev->daddr, flow->tuple.daddr, 16);
	if (flow->tuple.protocol == IPPROTO_ICMP || flow->tuple.protocol == IPPROTO_ICMPV6) {
		ev->sport = bpf_htons(flow->icmp_type);
		ev->dport = bpf_htons(flow->icmp_code);
	} else {
		ev->sport = flow->tuple.sport;
		ev->dport = flow->tuple.dport;
	}
	ev->tcp_flags = flow->tcp_flags;
	ev->pad[0] = ev->pad[1] = ev->pad[2] = 0;
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline void record_decision(const struct packet *pkt, const struct flow *flow,
					    const struct decision *d)
{
	count_verdict(d->reason, d->direction, d->verdict, pkt->len);
	if (d->verdict != VERDICT_FORWARDED || flow_record_wanted(d))
		emit_event(pkt, flow, d);
}

#endif /* STOCKADE_BPF_LIB_RECORD_H */

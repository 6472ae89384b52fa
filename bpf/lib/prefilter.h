/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CIDR deny prefilter for an uplink or a macvlan parent: where XDP runs
 * natively, denied sources are dropped before an skb exists.
 */
#ifndef STOCKADE_BPF_LIB_PREFILTER_H
#define STOCKADE_BPF_LIB_PREFILTER_H

#include "identity.h"
#include "parse.h"
#include "record.h"

static __always_inline __u8 prefilter_decide(struct packet *pkt)
{
	struct ethhdr *eth = pkt->data;
	struct flow flow = {};
	struct decision d = { .verdict = VERDICT_FORWARDED, .direction = DIR_INGRESS };
	struct ipcache_key key;
	struct prefilter_value *deny;
	void *l3 = PTR_ADD(pkt->data, sizeof(*eth));

	if (!HAS_BYTES(eth, sizeof(*eth), pkt->data_end))
		return VERDICT_FORWARDED; /* not ours to judge: the endpoint hooks decide */
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if (!HAS_BYTES(ip, sizeof(*ip), pkt->data_end))
			return VERDICT_FORWARDED;
		flow.tuple.family = STOCKADE_AF_INET;
		flow.tuple.protocol = ip->protocol;
		__builtin_memcpy(flow.tuple.saddr, &ip->saddr, 4);
		__builtin_memcpy(flow.tuple.daddr, &ip->daddr, 4);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if (!HAS_BYTES(ip6, sizeof(*ip6), pkt->data_end))
			return VERDICT_FORWARDED;
		flow.tuple.family = STOCKADE_AF_INET6;
		flow.tuple.protocol = ip6->nexthdr;
		__builtin_memcpy(flow.tuple.saddr, &ip6->saddr, 16);
		__builtin_memcpy(flow.tuple.daddr, &ip6->daddr, 16);
	} else {
		return VERDICT_FORWARDED;
	}
	ipcache_key_for(&key, flow.tuple.saddr, flow.tuple.family);
	deny = bpf_map_lookup_elem(&prefilter, &key);
	if (!deny)
		return VERDICT_FORWARDED; /* counted by the endpoint hooks, not twice */
	d.reason = DROP_PREFILTER_DENIED;
	d.rule_id = deny->rule_id;
	d.remote_identity = IDENTITY_WORLD;
	d.verdict = VERDICT_DROPPED;
	record_decision(pkt, &flow, &d);
	return VERDICT_DROPPED;
}

#endif /* STOCKADE_BPF_LIB_PREFILTER_H */

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fragments: the first fragment's ports are remembered, so later fragments of
 * the same datagram get the same verdict. A later fragment whose first was
 * not seen (lost, or sent out of order) is dropped: a verdict without ports
 * would be a guess.
 */
#ifndef STOCKADE_BPF_LIB_FRAGMENTS_H
#define STOCKADE_BPF_LIB_FRAGMENTS_H

#include "maps.h"
#include "parse.h"

static __always_inline void frag_key_for(struct frag_key *key, const struct flow *flow)
{
	__builtin_memcpy(key->saddr, flow->tuple.saddr, 16);
	__builtin_memcpy(key->daddr, flow->tuple.daddr, 16);
	key->id = flow->frag_id;
	key->protocol = flow->frag_protocol;
	key->family = flow->tuple.family;
	key->pad = 0;
}

static __always_inline int fragment_track(struct flow *flow)
{
	struct frag_key key;
	struct frag_value *found;

	if (flow->fragment == FRAG_NONE)
		return 0;
	frag_key_for(&key, flow);
	if (flow->fragment == FRAG_FIRST) {
		struct frag_value value = {
			.sport = flow->tuple.sport,
			.dport = flow->tuple.dport,
			.policy_port = flow->policy_port,
			.protocol = flow->tuple.protocol,
			.icmp_echo = flow->tuple.icmp_echo,
		};

		if (bpf_map_update_elem(&fragments, &key, &value, BPF_ANY) != 0)
			return DROP_FRAG_MAP_FULL;
		return 0;
	}
	found = bpf_map_lookup_elem(&fragments, &key);
	if (!found)
		return DROP_FRAG_NO_FIRST;
	flow->tuple.sport = found->sport;
	flow->tuple.dport = found->dport;
	flow->policy_port = found->policy_port;
	flow->tuple.protocol = found->protocol;
	flow->tuple.icmp_echo = found->icmp_echo;
	return 0;
}

#endif /* STOCKADE_BPF_LIB_FRAGMENTS_H */

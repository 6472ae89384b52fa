/* SPDX-License-Identifier: Apache-2.0 */
/* Where a new flow is decided: two policy lookups, deny wins. */
#ifndef STOCKADE_BPF_LIB_POLICY_H
#define STOCKADE_BPF_LIB_POLICY_H

#include "maps.h"

struct policy_result {
	int reason;   /* REASON_NONE or the drop reason */
	__u32 rule_id;
	__u8 audit;   /* the deny, or the TLS requirement, came from an audit-only rule */
	__u8 require_tls; /* allowed by a requireTLS entry */
};

struct policy_query {
	__u32 local_identity;
	__u32 remote_identity;
	__u8 direction;
	__u8 protocol;
	__u16 port;      /* network order */
	__u8 enforced;   /* a policy selects the endpoint in this direction */
	__u8 tunnel;     /* an encapsulation the container sends: needs an explicit allow */
};

static __always_inline int ip_protocol_is_tunnel(__u8 protocol)
{
	return protocol == IPPROTO_IPIP || protocol == IPPROTO_IPV6 || protocol == IPPROTO_GRE;
}

/* VXLAN (IANA and Linux's legacy port) and Geneve carried over UDP. */
static __always_inline int udp_port_is_tunnel(__u16 dport)
{
	return dport == bpf_htons(4789) || dport == bpf_htons(8472) || dport == bpf_htons(6081);
}

/* The longest match: the exact entry if there is one, else the trie's. */
static __always_inline struct policy_value *policy_lookup(const struct policy_key *key)
{
	struct policy_value *exact = bpf_map_lookup_elem(&policy_exact, key);

	return exact ? exact : bpf_map_lookup_elem(&policy, key);
}

static __always_inline void policy_decide(const struct policy_query *q, struct policy_result *res)
{
	struct policy_key key = {
		.prefixlen = POLICY_PREFIX_FULL,
		.local_identity = q->local_identity,
		.remote_identity = q->remote_identity,
		.direction = q->direction,
		.protocol = q->protocol,
		.dport = q->port,
	};
	struct policy_value *exact, *any_remote, *allow;

	res->reason = REASON_NONE;
	res->rule_id = 0;
	res->audit = 0;
	res->require_tls = 0;
	if (!q->enforced && !q->tunnel)
		return;

	exact = policy_lookup(&key);
	key.remote_identity = IDENTITY_ANY;
	any_remote = policy_lookup(&key);

	if (exact && exact->action == POLICY_ACTION_DENY) {
		allow = exact;
		goto denied;
	}
	if (any_remote && any_remote->action == POLICY_ACTION_DENY) {
		allow = any_remote;
		goto denied;
	}
	allow = exact ? exact : any_remote;
	/* requireTLS binds: an allow for any remote that requires TLS is not
	 * weakened by a plaintext allow naming the remote (docs/policy.md). */
	if (allow == exact && any_remote && (any_remote->flags & POLICY_F_REQUIRE_TLS) &&
	    !(exact->flags & POLICY_F_REQUIRE_TLS))
		allow = any_remote;
	if (q->tunnel && !(allow && (allow->flags & POLICY_F_EXPLICIT_PROTOCOL))) {
		res->reason = DROP_TUNNEL_DENIED;
		res->rule_id = allow ? allow->rule_id : 0;
		return;
	}
	if (allow || !q->enforced) {
		res->rule_id = allow ? allow->rule_id : 0;
		if (allow && (allow->flags & POLICY_F_REQUIRE_TLS)) {
			res->require_tls = 1;
			res->audit = !!(allow->flags & POLICY_F_AUDIT);
		}
		return;
	}
	res->reason = DROP_POLICY_DENIED; /* no rule matched: default deny */
	return;
denied:
	res->reason = DROP_POLICY_DENIED;
	res->rule_id = allow->rule_id;
	res->audit = !!(allow->flags & POLICY_F_AUDIT);
}

#endif /* STOCKADE_BPF_LIB_POLICY_H */

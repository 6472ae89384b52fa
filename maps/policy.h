/* SPDX-License-Identifier: Apache-2.0 */
/*
 * policy: an LPM trie keyed by (local identity, remote identity, direction,
 * protocol, destination port). The wildcards are prefixes of the key:
 *   - any port, or a port range, is a prefix over the port bits: a range
 *     becomes at most 2 * 16 - 2 entries, never one per port;
 *   - any protocol is a prefix that ends before the protocol byte;
 *   - any remote identity is remote_identity = IDENTITY_ANY, looked up second.
 * So a packet costs two lookups whatever the number of rules. Full-length
 * entries (one protocol, one port) are kept in a hash map, policy_exact, and
 * looked up there first: a trie lookup grows with the trie's depth (~10 ns at
 * 10 entries, ~70 ns at 100k), a hash lookup does not. The trie holds only
 * the shorter prefixes, so hash-then-trie gives the longest match.
 *
 * Deny wins. Within one lookup the trie returns the longest prefix, so the
 * agent writes every entry with the deny of any wider entry folded in; across
 * the two lookups the program checks both.
 */
#ifndef STOCKADE_MAPS_POLICY_H
#define STOCKADE_MAPS_POLICY_H

#include "abi_common.h"

#define STOCKADE_POLICY_MAX 262144

struct policy_key {
	__u32 prefixlen;      /* host order, LPM trie convention; see POLICY_PREFIX_* */
	__u32 local_identity; /* host order; matched whole, so byte order is no matter */
	__u32 remote_identity;/* host order; IDENTITY_ANY for the wildcard lookup */
	__u8 direction;       /* enum stockade_direction */
	__u8 protocol;        /* IPPROTO_*; ignored past the prefix when any */
	__u16 dport;          /* network order, so port prefixes are bit prefixes */
};
STOCKADE_ABI_SIZE(struct policy_key, 16);
STOCKADE_ABI_OFFSET(struct policy_key, local_identity, 4);
STOCKADE_ABI_OFFSET(struct policy_key, remote_identity, 8);
STOCKADE_ABI_OFFSET(struct policy_key, direction, 12);
STOCKADE_ABI_OFFSET(struct policy_key, protocol, 13);
STOCKADE_ABI_OFFSET(struct policy_key, dport, 14);

/* Prefix lengths, in bits of the key after prefixlen. */
#define POLICY_PREFIX_ANY_PROTOCOL 72 /* local, remote, direction */
#define POLICY_PREFIX_ANY_PORT 80     /* ... and protocol */
#define POLICY_PREFIX_FULL 96         /* ... and the whole port */

enum policy_action {
	POLICY_ACTION_ALLOW = 1,
	POLICY_ACTION_DENY = 2,
};

enum policy_flags {
	/* A deny that only reports: the packet passes with VERDICT_AUDIT. */
	POLICY_F_AUDIT = 1u << 0,
	/* The entry names its protocol: tunnels pass only under such an entry. */
	POLICY_F_EXPLICIT_PROTOCOL = 1u << 1,
	/* TCP only: the client's first payload must be a TLS ClientHello. */
	POLICY_F_REQUIRE_TLS = 1u << 2,
};

struct policy_value {
	__u32 rule_id; /* host order; 0 is 'no rule' */
	__u8 action;   /* enum policy_action */
	__u8 flags;    /* enum policy_flags */
	__u16 pad;
};
STOCKADE_ABI_SIZE(struct policy_value, 8);

#endif /* STOCKADE_MAPS_POLICY_H */

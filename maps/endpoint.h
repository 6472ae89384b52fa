/* SPDX-License-Identifier: Apache-2.0 */
/* endpoints map: which interface is which container, and how to enforce there. */
#ifndef STOCKADE_MAPS_ENDPOINT_H
#define STOCKADE_MAPS_ENDPOINT_H

#include "abi_common.h"

#define STOCKADE_ENDPOINTS_MAX 65536

/*
 * Interfaces are keyed by network namespace and ifindex together: an
 * interface inside a container's namespace (macvlan, overlay) may share its
 * ifindex with an unrelated host interface.
 */
struct endpoint_key {
	__u64 netns_cookie; /* host order; SO_NETNS_COOKIE of the interface's namespace */
	__u32 ifindex;      /* host order */
	__u32 pad;          /* must be zero */
};
STOCKADE_ABI_SIZE(struct endpoint_key, 16);
STOCKADE_ABI_OFFSET(struct endpoint_key, ifindex, 8);

/*
 * Where the hook sits decides how TC ingress/egress map to the endpoint's
 * direction: on the host-side veth, TC ingress sees what the container sends.
 */
enum endpoint_hook_role {
	HOOK_ROLE_HOST_VETH = 0,    /* host-side peer of the container's veth */
	HOOK_ROLE_IN_CONTAINER = 1, /* the container's own interface (macvlan, overlay) */
};

enum endpoint_flags {
	/* Managed, but its policy is not installed yet: drop everything. */
	ENDPOINT_F_NOT_READY = 1u << 0,
	/* A policy selects the endpoint in this direction: default deny there. */
	ENDPOINT_F_ENFORCE_INGRESS = 1u << 1,
	ENDPOINT_F_ENFORCE_EGRESS = 1u << 2,
	/* Policy drops are reported as VERDICT_AUDIT and the packet passes. */
	ENDPOINT_F_AUDIT = 1u << 3,
	/* VLAN-tagged frames from the container are accepted (they are dropped otherwise). */
	ENDPOINT_F_ALLOW_VLAN = 1u << 4,
};

struct endpoint_info {
	__u32 identity;        /* host order */
	__u32 flags;           /* enum endpoint_flags, host order */
	/*
	 * Bumped by the agent on every policy change that concerns this endpoint
	 * (an ipcache change included); a conntrack entry made under an older
	 * revision is checked again, so a revoked allow cuts established flows
	 * too, and a remembered deny made under one is decided again.
	 */
	__u32 policy_revision; /* host order */
	__u8 role;             /* enum endpoint_hook_role */
	__u8 pad0;
	__u8 mac[6];           /* the container's MAC; all zero: not checked */
	__u32 ipv4;            /* network order; 0: the endpoint has no IPv4 */
	__u8 ipv6[16];         /* network order; all zero: no IPv6 */
	__u8 ipv6_link_local[16]; /* network order; all zero: none */
};
STOCKADE_ABI_SIZE(struct endpoint_info, 56);
STOCKADE_ABI_OFFSET(struct endpoint_info, role, 12);
STOCKADE_ABI_OFFSET(struct endpoint_info, mac, 14);
STOCKADE_ABI_OFFSET(struct endpoint_info, ipv4, 20);
STOCKADE_ABI_OFFSET(struct endpoint_info, ipv6, 24);
STOCKADE_ABI_OFFSET(struct endpoint_info, ipv6_link_local, 40);

#endif /* STOCKADE_MAPS_ENDPOINT_H */

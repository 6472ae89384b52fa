/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the BPF programs (clang -target bpf) and the C++ agent (g++).
 * Fixed-width kernel types only, so both sides see one layout.
 */
#ifndef STOCKADE_MAPS_ABI_COMMON_H
#define STOCKADE_MAPS_ABI_COMMON_H

#include <linux/types.h>

#ifdef __cplusplus
#define STOCKADE_ABI_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define STOCKADE_ABI_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define STOCKADE_ABI_SIZE(type, size) \
	STOCKADE_ABI_ASSERT(sizeof(type) == (size), #type " size changed: the ABI is shared, update both sides")
#define STOCKADE_ABI_OFFSET(type, field, off) \
	STOCKADE_ABI_ASSERT(__builtin_offsetof(type, field) == (off), #type "." #field " moved")

/* Address families as carried in keys and events (values of AF_INET/AF_INET6). */
#define STOCKADE_AF_INET 2
#define STOCKADE_AF_INET6 10

/*
 * Direction is always from the endpoint's point of view, whatever the hook:
 * INGRESS is traffic to the container, EGRESS is traffic it sends.
 */
enum stockade_direction {
	DIR_INGRESS = 0,
	DIR_EGRESS = 1,
	DIR_MAX = 2,
};

/*
 * Identities are 32-bit numbers; below STOCKADE_IDENTITY_FIRST_ALLOCATED they
 * are reserved. IDENTITY_ANY is only ever used as a policy wildcard.
 */
enum stockade_reserved_identity {
	IDENTITY_ANY = 0,
	IDENTITY_HOST = 1,
	IDENTITY_WORLD = 2,
	IDENTITY_UNMANAGED = 3,
	IDENTITY_REMOTE_HOST = 4, /* another stockade host itself (its node addresses) */
	STOCKADE_IDENTITY_FIRST_ALLOCATED = 256,
};

/* What the program did with a packet. */
enum stockade_verdict {
	VERDICT_FORWARDED = 0,
	VERDICT_DROPPED = 1,
	VERDICT_AUDIT = 2, /* would have been dropped; passed because of audit mode */
	VERDICT_MAX = 3,
};

#endif /* STOCKADE_MAPS_ABI_COMMON_H */

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ipcache: address prefix -> identity, one LPM trie for both families, so a
 * container's /32 or /128 and a CIDR identity (world prefixes) share a lookup.
 */
#ifndef STOCKADE_MAPS_IPCACHE_H
#define STOCKADE_MAPS_IPCACHE_H

#include "abi_common.h"

#define STOCKADE_IPCACHE_MAX 262144

/*
 * The family is part of the matched prefix, so an IPv4 prefix never matches
 * an IPv6 address: prefixlen = 32 (family + pad) + address prefix bits.
 */
struct ipcache_key {
	__u32 prefixlen; /* host order, LPM trie convention */
	__u8 family;     /* STOCKADE_AF_INET or STOCKADE_AF_INET6 */
	__u8 pad[3];     /* must be zero */
	__u8 addr[16];   /* network order; IPv4 in the first 4 bytes, rest zero */
};
STOCKADE_ABI_SIZE(struct ipcache_key, 24);
STOCKADE_ABI_OFFSET(struct ipcache_key, addr, 8);

#define IPCACHE_PREFIX_FIXED_BITS 32

struct ipcache_value {
	__u32 identity; /* host order */
	__u32 flags;    /* reserved, zero */
};
STOCKADE_ABI_SIZE(struct ipcache_value, 8);

#endif /* STOCKADE_MAPS_IPCACHE_H */

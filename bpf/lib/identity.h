/* SPDX-License-Identifier: Apache-2.0 */
/* Where an address becomes an identity: one LPM lookup in the ipcache. */
#ifndef STOCKADE_BPF_LIB_IDENTITY_H
#define STOCKADE_BPF_LIB_IDENTITY_H

#include "maps.h"

static __always_inline void ipcache_key_for(struct ipcache_key *key, const __u8 addr[16], __u8 family)
{
	key->prefixlen = IPCACHE_PREFIX_FIXED_BITS + (family == STOCKADE_AF_INET ? 32 : 128);
	key->family = family;
	key->pad[0] = key->pad[1] = key->pad[2] = 0;
	__builtin_memcpy(key->addr, addr, 16);
}

/* An address no prefix covers is the world. */
static __always_inline __u32 identity_of(const __u8 addr[16], __u8 family)
{
	struct ipcache_key key;
	struct ipcache_value *value;

	ipcache_key_for(&key, addr, family);
	value = bpf_map_lookup_elem(&ipcache, &key);
	return value ? value->identity : IDENTITY_WORLD;
}

#endif /* STOCKADE_BPF_LIB_IDENTITY_H */

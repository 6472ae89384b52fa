/* SPDX-License-Identifier: Apache-2.0 */
/* Includes and small helpers every BPF file needs. BPF side only. */
#ifndef STOCKADE_BPF_LIB_COMMON_H
#define STOCKADE_BPF_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps/abi.h"

/* <linux/icmp.h> pulls in libc through <linux/if.h>; the few ICMP and
 * neighbour discovery numbers we need are here instead. */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_SOURCE_QUENCH 4
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define NDISC_ROUTER_SOLICITATION 133
#define NDISC_ROUTER_ADVERTISEMENT 134
#define NDISC_NEIGHBOUR_SOLICITATION 135
#define NDISC_NEIGHBOUR_ADVERTISEMENT 136
#define NDISC_REDIRECT 137

#define NS_PER_SEC 1000000000ull

#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

static __always_inline int addr_is_zero(const __u8 a[16])
{
	const __u32 *w = (const __u32 *)a;

	return (w[0] | w[1] | w[2] | w[3]) == 0;
}

static __always_inline int addr_equal(const __u8 a[16], const __u8 b[16])
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

/* Any total order will do: it only has to put both directions of a flow alike. */
static __always_inline int addr_port_less(const __u8 a[16], __u16 pa, const __u8 b[16], __u16 pb)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (x[i] != y[i])
			return x[i] < y[i];
	}
	return pa < pb;
}

static __always_inline int mac_equal(const __u8 a[6], const __u8 b[6])
{
	return *(const __u32 *)a == *(const __u32 *)b &&
	       *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

static __always_inline int mac_is_zero(const __u8 a[6])
{
	return (*(const __u32 *)a | *(const __u16 *)(a + 4)) == 0;
}

#endif /* STOCKADE_BPF_LIB_COMMON_H */

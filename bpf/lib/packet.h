/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one view of a packet that the library works on, filled by the TC or the
 * XDP entry point. Everything below takes a struct packet, so every helper is
 * written once for both hooks.
 */
#ifndef STOCKADE_BPF_LIB_PACKET_H
#define STOCKADE_BPF_LIB_PACKET_H

#include "common.h"

/*
 * The namespace of the interface a program runs on. bpf_get_netns_cookie()
 * will not do: for an skb it answers with the namespace of the skb's socket,
 * or init_net when there is none, which is wrong for a container's packets
 * seen on a host-side veth and for anything forwarded into a container. So
 * the device's own namespace is read, through the kernel context and CO-RE.
 * Only the fields read are declared; libbpf finds them in the running kernel.
 */
struct net___stockade {
	__u64 net_cookie;
} __attribute__((preserve_access_index));

struct net_device___stockade {
	struct {
		struct net___stockade *net;
	} nd_net;
} __attribute__((preserve_access_index));

struct sk_buff___stockade {
	struct net_device___stockade *dev;
} __attribute__((preserve_access_index));

struct xdp_rxq_info___stockade {
	struct net_device___stockade *dev;
} __attribute__((preserve_access_index));

struct xdp_buff___stockade {
	struct xdp_rxq_info___stockade *rxq;
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

enum hook_point {
	HOOK_TC_INGRESS = 0, /* packets the interface receives */
	HOOK_TC_EGRESS = 1,  /* packets the interface sends */
	HOOK_XDP = 2,        /* receive side, before an skb exists */
};

/* Headers we read must be in the linear part of an skb; 512 bytes covers any
 * IPv6 extension chain we accept (8 headers) and the inner header of an ICMP error. */
#define PACKET_LINEAR_BYTES 512

struct packet {
	void *data;
	void *data_end;
	__u64 netns_cookie;
	__u32 len;     /* whole frame, including what is not linear */
	__u32 ifindex; /* the interface the program is attached to */
	__u8 hook;     /* enum hook_point */
	__u8 vlan_offloaded; /* the frame's VLAN tag sits in skb metadata */
};

static __always_inline void packet_from_skb(struct packet *pkt, struct __sk_buff *skb, enum hook_point hook)
{
	struct sk_buff___stockade *kskb = bpf_cast_to_kern_ctx(skb);
	__u32 want = skb->len < PACKET_LINEAR_BYTES ? skb->len : PACKET_LINEAR_BYTES;

	if ((__u64)skb->data_end - skb->data < want)
		bpf_skb_pull_data(skb, want);
	pkt->data = (void *)(long)skb->data;
	pkt->data_end = (void *)(long)skb->data_end;
	pkt->len = skb->len;
	pkt->ifindex = skb->ifindex;
	/* Plain loads through the trusted kernel pointer: a BPF_CORE_READ chain
	 * of probe reads costs ~20 ns more per packet. */
	pkt->netns_cookie = kskb->dev->nd_net.net->net_cookie;
	pkt->hook = hook;
	pkt->vlan_offloaded = skb->vlan_present;
}

static __always_inline void packet_from_xdp(struct packet *pkt, struct xdp_md *xdp)
{
	struct xdp_buff___stockade *kxdp = bpf_cast_to_kern_ctx(xdp);

	pkt->data = (void *)(long)xdp->data;
	pkt->data_end = (void *)(long)xdp->data_end;
	pkt->len = xdp->data_end - xdp->data;
	pkt->ifindex = xdp->ingress_ifindex;
	pkt->netns_cookie = kxdp->rxq->dev->nd_net.net->net_cookie;
	pkt->hook = HOOK_XDP;
	pkt->vlan_offloaded = 0;
}

/* TC ingress on the host-side veth sees what the container sends: that is its egress. */
static __always_inline __u8 packet_direction(const struct packet *pkt, __u8 role)
{
	int receive_side = pkt->hook != HOOK_TC_EGRESS;

	if (role == HOOK_ROLE_HOST_VETH)
		return receive_side ? DIR_EGRESS : DIR_INGRESS;
	return receive_side ? DIR_INGRESS : DIR_EGRESS;
}

#endif /* STOCKADE_BPF_LIB_PACKET_H */

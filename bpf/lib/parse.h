/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Header parsers. Each takes a cursor into the packet and returns the next
 * offset or protocol (>= 0) or a negative drop reason. What they find goes
 * into struct flow, the only thing the policy stages look at.
 */
#ifndef STOCKADE_BPF_LIB_PARSE_H
#define STOCKADE_BPF_LIB_PARSE_H

#include "packet.h"

/* Hop-by-hop, destination, routing, fragment, AH, destination: the longest
 * chain RFC 8200's order allows (ipv6_ext_order). */
#define IPV6_MAX_EXT_HEADERS 6
#define VLAN_MAX_TAGS 2

#ifndef NEXTHDR_HOP
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_NONE 59
#define NEXTHDR_DEST 60
#define NEXTHDR_MOBILITY 135
#endif
#define IPPROTO_HIP 139
#define IPPROTO_SHIM6 140
#define IPPROTO_EXPERIMENT1 253
#define IPPROTO_EXPERIMENT2 254

enum flow_kind {
	FLOW_KIND_IP = 0,         /* ordinary IP traffic, decided by policy */
	FLOW_KIND_ARP = 1,        /* saddr holds the ARP sender address */
	FLOW_KIND_NEIGHBOUR = 2,  /* NDP, MLD and IGMP: link-local housekeeping */
	FLOW_KIND_ICMP_ERROR = 3, /* may be related to a tracked flow */
};

enum flow_fragment {
	FRAG_NONE = 0,
	FRAG_FIRST = 1, /* offset 0, more fragments follow: carries the ports */
	FRAG_LATER = 2, /* no L4 header: ports come from the fragments map */
};

struct flow_tuple {
	__u8 saddr[16]; /* network order; IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u16 sport;    /* network order; ICMP echo: the identifier */
	__u16 dport;    /* network order; ICMP echo: the identifier */
	__u8 protocol;
	__u8 family;
	__u8 icmp_echo; /* an ICMP echo request or reply: see ct_key */
	__u8 pad;
};

struct flow {
	struct flow_tuple tuple;
	__u8 eth_src[6];
	__u8 vlan_tagged;   /* a VLAN tag was in the frame */
	__u8 has_ethernet;  /* eth_src is valid */
	__u8 arp_sender_mac[6];
	__u16 pad1;
	/* An ICMP error's embedded header, as the original packet had it. */
	struct flow_tuple inner;
	__u16 policy_port; /* network order; dport, or the ICMP type */
	__u8 kind;         /* enum flow_kind */
	__u8 fragment;     /* enum flow_fragment */
	__u32 frag_id;     /* network order */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 inner_valid;
	__u8 nd_target[16]; /* neighbour advertisement target */
	/* The MAC that the ND message's link-layer address options name
	 * (nd_lla_seen), all of them the same one; check_source() wants the
	 * endpoint's own. */
	__u8 nd_lla[6];
	__u8 nd_lla_seen;
	__u8 hop_limit; /* IPv6: ND must come with 255 */
	/* The IPv4 options, or an RS, NS or NA's, from and to these offsets in
	 * the frame; equal when there are none. parse_options() walks them,
	 * moving options_off on. */
	__u16 options_off;
	__u16 options_end;
	/* enum ipv6_ext_seen: the extension headers walked so far. Kept here
	 * rather than in a register: a register holds a known value on each
	 * path, and paths that differ in it only are not pruned (the extension
	 * loop passed the verifier's budget); a value read back from memory is
	 * unknown, and they are. */
	__u8 ext_seen;
	__u8 options_ended; /* IPv4: the walk met the end of the option list */
	/* The protocol the fragment header names, which keys the datagram: a
	 * first fragment's upper layer may lie behind extension headers (say,
	 * destination options) that the later fragments do not repeat. */
	__u8 frag_protocol;
	/* TCP: where the segment's payload starts in the frame, and its length
	 * by the IP header (0: none, or a later fragment). */
	__u16 payload_off;
	__u16 payload_len;
};

/* Which extension headers a chain has shown so far. */
enum ipv6_ext_seen {
	EXT_SEEN_ROUTING = 1,
	EXT_SEEN_FRAGMENT = 2,
	EXT_SEEN_AUTH = 4,
	EXT_SEEN_DEST = 8,                 /* a first destination options header */
	EXT_SEEN_ROUTING_AFTER_DEST = 16,  /* which was the one before routing */
	EXT_SEEN_SECOND_DEST = 32,
};

#define PTR_ADD(p, off) ((void *)((__u8 *)(p) + (off)))
#define HAS_BYTES(p, n, end) ((void *)((__u8 *)(p) + (n)) <= (end))

/*
 * The ICMP of the packet's own family. ICMPv6 carried in IPv4 (or ICMP in
 * IPv6) is no control message of that stack: a protocol without ports,
 * types or exemptions (an ICMPv6 'neighbour solicitation' in IPv4 skipped
 * policy as neighbour discovery).
 */
static __always_inline int is_icmp_of_family(__u8 protocol, __u8 family)
{
	return family == STOCKADE_AF_INET ? protocol == IPPROTO_ICMP : protocol == IPPROTO_ICMPV6;
}

/* Ports from the first bytes of an L4 header, for TCP, UDP, SCTP and ICMP echo. */
static __always_inline int parse_l4_ports(void *l4, void *end, __u8 protocol, __u8 family, struct flow_tuple *t)
{
	__u8 echo_request = family == STOCKADE_AF_INET ? ICMP_ECHO : ICMPV6_ECHO_REQUEST;
	__u8 echo_reply = family == STOCKADE_AF_INET ? ICMP_ECHOREPLY : ICMPV6_ECHO_REPLY;

	switch (protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (!HAS_BYTES(l4, 4, end))
			return DROP_INVALID_PACKET;
		t->sport = ((__u16 *)l4)[0];
		t->dport = ((__u16 *)l4)[1];
		return 0;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (!is_icmp_of_family(protocol, family))
			return 0;
		if (!HAS_BYTES(l4, 8, end))
			return DROP_INVALID_PACKET;
		/* The echo identifier stands in for a port, on the requester's
		 * side: a request is (id -> 0), its reply (0 -> id), so the reply
		 * finds the request's flow and a request the other way does not. */
		if (((__u8 *)l4)[0] == echo_request) {
			t->sport = ((__u16 *)l4)[2];
			t->icmp_echo = 1;
		} else if (((__u8 *)l4)[0] == echo_reply) {
			t->dport = ((__u16 *)l4)[2];
			t->icmp_echo = 1;
		}
		return 0;
	}
	return 0;
}

/* Bytes parse_l4_ports() reads. */
static __always_inline __u32 l4_ports_bytes(__u8 protocol, __u8 family)
{
	if (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP || protocol == IPPROTO_SCTP)
		return 4;
	return is_icmp_of_family(protocol, family) ? 8 : 0;
}

/*
 * The IP header inside an ICMP error, to match it against conntrack. avail:
 * the error's datagram after its ICMP header. What lies beyond (Ethernet
 * padding) is no part of the quote, though it is in the frame: checked by
 * number, as the frame's end is what the verifier knows.
 */
static __always_inline void parse_icmp_inner(void *inner, void *end, __u32 avail, __u8 family, struct flow *flow)
{
	struct flow_tuple *t = &flow->inner;
	__u32 hlen;

	if (family == STOCKADE_AF_INET) {
		struct iphdr *ip = inner;

		if (avail < sizeof(*ip) || !HAS_BYTES(ip, sizeof(*ip), end) || ip->ihl < 5 || ip->version != 4)
			return;
		__builtin_memcpy(t->saddr, &ip->saddr, 4);
		__builtin_memcpy(t->daddr, &ip->daddr, 4);
		t->protocol = ip->protocol;
		hlen = ip->ihl * 4;
	} else {
		struct ipv6hdr *ip6 = inner;

		if (avail < sizeof(*ip6) || !HAS_BYTES(ip6, sizeof(*ip6), end) || ip6->version != 6)
			return;
		__builtin_memcpy(t->saddr, &ip6->saddr, 16);
		__builtin_memcpy(t->daddr, &ip6->daddr, 16);
		t->protocol = ip6->nexthdr;
		hlen = sizeof(*ip6);
	}
	t->family = family;
	if (hlen + l4_ports_bytes(t->protocol, family) > avail)
		return;
	if (parse_l4_ports(PTR_ADD(inner, hlen), end, t->protocol, family, t) < 0)
		return;
	flow->inner_valid = 1;
}

static __always_inline int icmp_is_error(__u8 family, __u8 type)
{
	if (family == STOCKADE_AF_INET)
		return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED ||
		       type == ICMP_PARAMETERPROB || type == ICMP_SOURCE_QUENCH;
	return type >= ICMPV6_DEST_UNREACH && type <= ICMPV6_PARAMPROB;
}

static __always_inline int icmp6_is_neighbour(__u8 type)
{
	switch (type) {
	case ICMPV6_MGM_QUERY:
	case ICMPV6_MGM_REPORT:
	case ICMPV6_MGM_REDUCTION:
	case ICMPV6_MLD2_REPORT:
	case NDISC_ROUTER_SOLICITATION:
	case NDISC_ROUTER_ADVERTISEMENT:
	case NDISC_NEIGHBOUR_SOLICITATION:
	case NDISC_NEIGHBOUR_ADVERTISEMENT:
	case NDISC_REDIRECT:
		return 1;
	}
	return 0;
}

static __always_inline int icmp6_is_nd(__u8 type)
{
	return type >= NDISC_ROUTER_SOLICITATION && type <= NDISC_REDIRECT;
}

#define ND_OPT_SOURCE_LL_ADDR 1
#define ND_OPT_TARGET_LL_ADDR 2
/* More than any RS, NS or NA carries: a link-layer address, a nonce
 * (RFC 7527) and SEND's four (RFC 3971). */
#define ND_MAX_OPTIONS 8

/* Bytes before the options: RFC 4861's minimum length of each message. */
static __always_inline __u32 nd_fixed_length(__u8 type)
{
	switch (type) {
	case NDISC_ROUTER_SOLICITATION:
		return 8;
	case NDISC_ROUTER_ADVERTISEMENT:
		return 16;
	case NDISC_REDIRECT:
		return 40;
	}
	return 24; /* neighbour solicitation and advertisement */
}

/*
 * Neighbour discovery, held to RFC 4861's validity checks (hop limit 255,
 * code 0, minimum length). Fragments are refused where the caller knows of
 * them (RFC 6980). The options of the messages a container may send (RS, NS,
 * NA) are walked later, by parse_options(); those of router
 * advertisements and redirects are not: a container may not send them
 * (check_source), and the host's may carry more than the walk is bounded to.
 */
static __always_inline int parse_nd(void *l4, void *end, __u32 l4_off, __u32 l4_len, struct flow *flow)
{
	__u8 type = flow->icmp_type;
	__u32 fixed = nd_fixed_length(type);

	if (flow->hop_limit != 255 || flow->icmp_code != 0 || l4_len < fixed)
		return DROP_ND_INVALID;
	/* Never fragmented, not even atomically (RFC 6980). */
	if (flow->ext_seen & EXT_SEEN_FRAGMENT)
		return DROP_ND_INVALID;
	if (type == NDISC_NEIGHBOUR_ADVERTISEMENT) {
		if (!HAS_BYTES(l4, 24, end))
			return DROP_INVALID_PACKET;
		__builtin_memcpy(flow->nd_target, PTR_ADD(l4, 8), 16);
	}
	if (type == NDISC_ROUTER_ADVERTISEMENT || type == NDISC_REDIRECT || l4_len == fixed)
		return 0;
	if (l4_off + l4_len > 0xffff)
		return DROP_INVALID_PACKET;
	flow->options_off = l4_off + fixed;
	flow->options_end = l4_off + l4_len;
	return 0;
}

/*
 * The options of an RS, NS or NA that parse_nd() found (RFC 4861 4.6). Every
 * link-layer address option must name one MAC, which check_source() holds
 * against the endpoint's own: an option naming another poisons the peer's
 * neighbour cache as a forged ARP sender would. From :: (duplicate address
 * detection) a solicitation carries none (RFC 4861 4.1, 4.3).
 */
static __always_inline int parse_nd_options(void *data, void *end, struct flow *flow)
{
	for (int i = 0; i < ND_MAX_OPTIONS; i++) {
		/* The cursor lives in the flow, not in a register: see ext_seen. */
		__u32 off = flow->options_off, stop = flow->options_end, opt_len;
		__u8 *opt;

		if (off >= stop)
			break;
		/* The verifier marks a packet pointer's range only while its
		 * offset stays below 64 KiB, the bytes read included: bound it
		 * well inside (a message is smaller than a frame). */
		if (off > 0x7fff || stop > 0x7fff)
			return DROP_ND_OPTION;
		/* clang folds that test into one on (off | stop), which the
		 * verifier cannot carry back to off: mask it where it sees it. */
		asm volatile("%0 &= 0x7fff" : "+r"(off));
		opt = PTR_ADD(data, off);
		if (off + 2 > stop || !HAS_BYTES(opt, 2, end))
			return DROP_ND_OPTION;
		opt_len = (__u32)opt[1] * 8;
		if (opt_len == 0 || off + opt_len > stop)
			return DROP_ND_OPTION;
		if (opt[0] == ND_OPT_SOURCE_LL_ADDR || opt[0] == ND_OPT_TARGET_LL_ADDR) {
			/* Ethernet's is 8 bytes, type and length and the MAC (RFC 2464). */
			if (opt_len != 8 || !HAS_BYTES(opt, 8, end))
				return DROP_ND_OPTION;
			if (flow->nd_lla_seen && !mac_equal(flow->nd_lla, opt + 2))
				return DROP_ND_OPTION;
			__builtin_memcpy(flow->nd_lla, opt + 2, ETH_ALEN);
			flow->nd_lla_seen = 1;
		}
		flow->options_off = off + opt_len;
	}
	if (flow->options_off < flow->options_end)
		return DROP_ND_OPTION; /* more options than ND_MAX_OPTIONS */
	if (flow->nd_lla_seen && flow->icmp_type != NDISC_NEIGHBOUR_ADVERTISEMENT && addr_is_zero(flow->tuple.saddr))
		return DROP_ND_OPTION;
	return 0;
}

/*
 * The L4 header of an unfragmented packet or a first fragment. l4_len is what
 * the IP header says is there: a first fragment too short to hold the L4
 * header is the tiny-fragment attack (RFC 1858) and is dropped.
 */
static __always_inline int parse_l4(void *l4, void *end, __u32 l4_off, __u32 l4_len, struct flow *flow)
{
	struct flow_tuple *t = &flow->tuple;
	__u32 need = 0;
	int ret;

	switch (t->protocol) {
	case IPPROTO_TCP:
		need = sizeof(struct tcphdr);
		break;
	case IPPROTO_UDP:
		need = 8;
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		need = is_icmp_of_family(t->protocol, t->family) ? 8 : 0;
		break;
	case IPPROTO_SCTP:
		need = 4;
		break;
	case IPPROTO_IGMP:
		/* Multicast membership is the link's business, as MLD is for IPv6.
		 * Only IPv4 has IGMP, and only to a group: IPv6 next header 2, or
		 * IGMP to a unicast peer, is a flow that policy decides. */
		if (t->family == STOCKADE_AF_INET && (t->daddr[0] & 0xf0) == 0xe0)
			flow->kind = FLOW_KIND_NEIGHBOUR;
		break;
	}
	if (l4_len < need)
		return flow->fragment == FRAG_FIRST ? DROP_FRAG_TOO_SMALL : DROP_INVALID_PACKET;
	ret = parse_l4_ports(l4, end, t->protocol, t->family, t);
	if (ret < 0)
		return ret;
	flow->policy_port = t->dport;

	if (t->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		__u32 tcp_len;

		if (!HAS_BYTES(tcp, sizeof(*tcp), end) || tcp->doff < 5)
			return DROP_INVALID_PACKET;
		flow->tcp_flags = ((__u8 *)tcp)[13];
		tcp_len = tcp->doff * 4;
		if (l4_len > tcp_len && l4_off + l4_len <= 0xffff) {
			flow->payload_off = l4_off + tcp_len;
			flow->payload_len = l4_len - tcp_len;
		}
	} else if (is_icmp_of_family(t->protocol, t->family)) {
		__u8 type;

		/* parse_l4_ports checked these bytes, but clang tests the protocol in
		 * another register than the switch did and the verifier cannot tell
		 * the two are equal: check again. */
		if (!HAS_BYTES(l4, 8, end))
			return DROP_INVALID_PACKET;
		type = ((__u8 *)l4)[0];

		flow->icmp_type = type;
		flow->icmp_code = ((__u8 *)l4)[1];
		/* Policy names ICMP by type, in the port's place. */
		flow->policy_port = bpf_htons(type);
		if (icmp_is_error(t->family, type)) {
			flow->kind = FLOW_KIND_ICMP_ERROR;
			if (flow->fragment == FRAG_NONE)
				parse_icmp_inner(PTR_ADD(l4, 8), end, l4_len - 8, t->family, flow);
		} else if (t->protocol == IPPROTO_ICMPV6 && icmp6_is_neighbour(type)) {
			flow->kind = FLOW_KIND_NEIGHBOUR;
			if (icmp6_is_nd(type))
				return parse_nd(l4, end, l4_off, l4_len, flow);
		}
	}
	return 0;
}

#define IPV4_OPT_END_OF_LIST 0
#define IPV4_OPT_NO_OPERATION 1
#define IPV4_OPT_RECORD_ROUTE 7
#define IPV4_OPT_TIMESTAMP 68
#define IPV4_OPT_SECURITY 130 /* RFC 1108 */
#define IPV4_OPT_LOOSE_SOURCE_ROUTE 131
#define IPV4_OPT_EXTENDED_SECURITY 133 /* RFC 1108 */
#define IPV4_OPT_COMMERCIAL_SECURITY 134 /* CIPSO */
#define IPV4_OPT_STRICT_SOURCE_ROUTE 137
#define IPV4_OPT_ROUTER_ALERT 148 /* RFC 2113 */
/* 40 bytes of options, none shorter than a byte. */
#define IPV4_MAX_OPTIONS 40

/*
 * IPv4 options, after RFC 7126. A source route (loose or strict) would carry
 * the packet past the destination policy decided on; record route and
 * timestamp collect the addresses of the hosts on the path, and nothing
 * between containers needs them. Router alert (IGMP) and the security
 * labels (which a labelled-networking receiver enforces) pass. Anything else
 * is obsolete or unknown, and refused. docs/security.md has the table.
 */
static __always_inline int check_ipv4_options(void *data, void *end, struct flow *flow)
{
	for (int i = 0; i < IPV4_MAX_OPTIONS; i++) {
		/* The cursor lives in the flow, not in a register: see ext_seen. */
		__u32 off = flow->options_off, stop = flow->options_end, opt_len;
		__u8 *opt;

		if (off >= stop)
			return 0;
		/* The header starts after Ethernet and at most two VLAN tags, and
		 * its options are at most 40 bytes long. */
		if (off > 0xff || stop > 0xff)
			return DROP_INVALID_PACKET;
		/* As in parse_nd_options(): the verifier must see off bounded. */
		asm volatile("%0 &= 0xff" : "+r"(off));
		opt = PTR_ADD(data, off);
		if (!HAS_BYTES(opt, 1, end))
			return DROP_INVALID_PACKET;
		/* What follows the end of the list is padding, zeros (RFC 791):
		 * an option hidden there is read by one stack and not another. */
		if (flow->options_ended && opt[0] != IPV4_OPT_END_OF_LIST)
			return DROP_IPV4_OPTION;
		if (opt[0] == IPV4_OPT_END_OF_LIST || opt[0] == IPV4_OPT_NO_OPERATION) {
			if (opt[0] == IPV4_OPT_END_OF_LIST)
				flow->options_ended = 1;
			flow->options_off = off + 1;
			continue;
		}
		if (off + 2 > stop || !HAS_BYTES(opt, 2, end))
			return DROP_IPV4_OPTION;
		opt_len = opt[1];
		if (opt_len < 2 || off + opt_len > stop)
			return DROP_IPV4_OPTION;
		switch (opt[0]) {
		case IPV4_OPT_LOOSE_SOURCE_ROUTE:
		case IPV4_OPT_STRICT_SOURCE_ROUTE:
			return DROP_SOURCE_ROUTE;
		case IPV4_OPT_ROUTER_ALERT:
			if (opt_len != 4)
				return DROP_IPV4_OPTION;
			break;
		case IPV4_OPT_SECURITY:
		case IPV4_OPT_EXTENDED_SECURITY:
		case IPV4_OPT_COMMERCIAL_SECURITY:
			break;
		default:
			return DROP_IPV4_OPTION;
		}
		flow->options_off = off + opt_len;
	}
	return 0;
}

static __always_inline int parse_ipv4(void *l3, void *end, __u32 l3_off, __u32 avail, struct flow *flow)
{
	struct iphdr *ip = l3;
	__u32 hlen, total;
	__u16 frag;

	if (!HAS_BYTES(ip, sizeof(*ip), end) || ip->version != 4 || ip->ihl < 5)
		return DROP_INVALID_PACKET;
	hlen = ip->ihl * 4;
	total = bpf_ntohs(ip->tot_len);
	if (total < hlen || total > avail)
		return DROP_INVALID_PACKET;
	flow->tuple.family = STOCKADE_AF_INET;
	flow->tuple.protocol = ip->protocol;
	__builtin_memcpy(flow->tuple.saddr, &ip->saddr, 4);
	__builtin_memcpy(flow->tuple.daddr, &ip->daddr, 4);
	flow->options_off = l3_off + sizeof(*ip);
	flow->options_end = l3_off + hlen;

	frag = bpf_ntohs(ip->frag_off);
	/* Offset 8 rewrites the TCP flags of the first fragment (RFC 1858). */
	if ((frag & 0x1fff) == 1 && ip->protocol == IPPROTO_TCP)
		return DROP_FRAG_TOO_SMALL;
	flow->frag_protocol = ip->protocol;
	if (frag & 0x1fff) {
		flow->fragment = FRAG_LATER;
		flow->frag_id = ip->id;
		return 0;
	}
	if (frag & 0x2000) {
		flow->fragment = FRAG_FIRST;
		flow->frag_id = ip->id;
	}
	return parse_l4(PTR_ADD(ip, hlen), end, l3_off + hlen, total - hlen, flow);
}

static __always_inline int ipv6_ext_is_unknown(__u8 nexthdr)
{
	return nexthdr == NEXTHDR_MOBILITY || nexthdr == IPPROTO_HIP || nexthdr == IPPROTO_SHIM6 ||
	       nexthdr == IPPROTO_EXPERIMENT1 || nexthdr == IPPROTO_EXPERIMENT2;
}


/*
 * RFC 8200 4.1: hop-by-hop options only right after the IPv6 header; each
 * other header at most once, but destination options twice, once before a
 * routing header and once before the upper layer. Returns the new set, or a
 * drop reason.
 */
static __always_inline int ipv6_ext_order(__u8 nexthdr, int index, int seen)
{
	switch (nexthdr) {
	case NEXTHDR_HOP:
		return index == 0 ? seen : DROP_IPV6_EXT_ORDER;
	case NEXTHDR_ROUTING:
		if (seen & EXT_SEEN_ROUTING)
			return DROP_IPV6_EXT_ORDER;
		return seen | EXT_SEEN_ROUTING | (seen & EXT_SEEN_DEST ? EXT_SEEN_ROUTING_AFTER_DEST : 0);
	case NEXTHDR_FRAGMENT:
		return seen & EXT_SEEN_FRAGMENT ? DROP_IPV6_EXT_ORDER : seen | EXT_SEEN_FRAGMENT;
	case NEXTHDR_AUTH:
		return seen & EXT_SEEN_AUTH ? DROP_IPV6_EXT_ORDER : seen | EXT_SEEN_AUTH;
	case NEXTHDR_DEST:
		if (!(seen & EXT_SEEN_DEST))
			return seen | EXT_SEEN_DEST;
		if ((seen & EXT_SEEN_ROUTING_AFTER_DEST) && !(seen & EXT_SEEN_SECOND_DEST))
			return seen | EXT_SEEN_SECOND_DEST;
		return DROP_IPV6_EXT_ORDER;
	}
	return seen;
}

static __always_inline int parse_ipv6(void *l3, void *end, __u32 l3_off, __u32 avail, struct flow *flow)
{
	struct ipv6hdr *ip6 = l3;
	__u32 payload, consumed = 0;
	void *cursor;
	__u8 nexthdr;
	int ret;

	if (!HAS_BYTES(ip6, sizeof(*ip6), end) || ip6->version != 6)
		return DROP_INVALID_PACKET;
	payload = bpf_ntohs(ip6->payload_len);
	/* A zero payload length is a jumbogram; nothing here sends those. */
	if (payload == 0 || payload + sizeof(*ip6) > avail)
		return DROP_INVALID_PACKET;
	flow->tuple.family = STOCKADE_AF_INET6;
	flow->hop_limit = ip6->hop_limit;
	__builtin_memcpy(flow->tuple.saddr, &ip6->saddr, 16);
	__builtin_memcpy(flow->tuple.daddr, &ip6->daddr, 16);
	nexthdr = ip6->nexthdr;
	cursor = PTR_ADD(ip6, sizeof(*ip6));

	for (int i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		__u8 *ext = cursor;
		__u32 ext_len;

		ret = ipv6_ext_order(nexthdr, i, flow->ext_seen);
		if (ret < 0)
			return ret;
		flow->ext_seen = ret;
		switch (nexthdr) {
		case NEXTHDR_HOP:
		case NEXTHDR_DEST:
		case NEXTHDR_ROUTING:
		case NEXTHDR_AUTH:
			if (!HAS_BYTES(ext, 8, end))
				return DROP_INVALID_PACKET;
			/* AH counts its length in 4-byte units less 2, the rest in 8-byte units less 1. */
			ext_len = nexthdr == NEXTHDR_AUTH ? ((__u32)ext[1] + 2) * 4 : ((__u32)ext[1] + 1) * 8;
			if (nexthdr == NEXTHDR_ROUTING && ext[2] == 0)
				return DROP_IPV6_ROUTING_TYPE0;
			/* Segments left: the packet goes on to hops policy never saw,
			 * whatever the type (RFC 8200 4.4; SRH, RFC 8754). */
			if (nexthdr == NEXTHDR_ROUTING && ext[3] != 0)
				return DROP_SOURCE_ROUTE;
			break;
		case NEXTHDR_FRAGMENT: {
			__u16 off;

			if (!HAS_BYTES(ext, 8, end))
				return DROP_INVALID_PACKET;
			ext_len = 8;
			off = bpf_ntohs(*(__u16 *)(ext + 2));
			flow->frag_id = *(__u32 *)(ext + 4);
			flow->frag_protocol = ext[0];
			if ((off >> 3) == 1 && ext[0] == IPPROTO_TCP)
				return DROP_FRAG_TOO_SMALL; /* overlaps the TCP header, RFC 1858 */
			if (off & 0xfff8) {
				flow->fragment = FRAG_LATER;
				flow->tuple.protocol = ext[0];
				return 0;
			}
			/* An atomic fragment (offset 0, no more) is a whole datagram. */
			if (off & 1)
				flow->fragment = FRAG_FIRST;
			break;
		}
		default:
			if (ipv6_ext_is_unknown(nexthdr))
				return DROP_IPV6_EXT_UNKNOWN;
			goto l4;
		}
		consumed += ext_len;
		if (consumed > payload)
			return DROP_INVALID_PACKET;
		nexthdr = ext[0];
		cursor = PTR_ADD(cursor, ext_len);
	}
	/* A header the order rules allow no more of: the longest chain they
	 * allow is IPV6_MAX_EXT_HEADERS long. */
	switch (nexthdr) {
	case NEXTHDR_HOP:
	case NEXTHDR_DEST:
	case NEXTHDR_ROUTING:
	case NEXTHDR_AUTH:
	case NEXTHDR_FRAGMENT:
		return DROP_IPV6_EXT_ORDER;
	}
	if (ipv6_ext_is_unknown(nexthdr))
		return DROP_IPV6_EXT_UNKNOWN;
l4:
	flow->tuple.protocol = nexthdr;
	if (nexthdr == NEXTHDR_NONE)
		return 0;
	return parse_l4(cursor, end, l3_off + sizeof(*ip6) + consumed, payload - consumed, flow);
}

#define ARP_HW_ETHER 1

/* <linux/if_arp.h> drags in libc headers that do not build for BPF. */
struct arp_eth_ipv4 {
	__be16 hw_type;
	__be16 proto_type;
	__u8 hw_len;
	__u8 proto_len;
	__be16 op;
	__u8 sender_mac[ETH_ALEN];
	__u8 sender_ip[4];
	__u8 target_mac[ETH_ALEN];
	__u8 target_ip[4];
} __attribute__((packed));

static __always_inline int parse_arp(void *l3, void *end, struct flow *flow)
{
	struct arp_eth_ipv4 *arp = l3;

	if (!HAS_BYTES(arp, sizeof(*arp), end))
		return DROP_INVALID_PACKET;
	if (arp->hw_type != bpf_htons(ARP_HW_ETHER) || arp->proto_type != bpf_htons(ETH_P_IP) ||
	    arp->hw_len != ETH_ALEN || arp->proto_len != 4)
		return DROP_INVALID_PACKET;
	flow->kind = FLOW_KIND_ARP;
	flow->tuple.family = STOCKADE_AF_INET; /* events show ARP as IPv4 with protocol 0 */
	__builtin_memcpy(flow->arp_sender_mac, arp->sender_mac, ETH_ALEN);
	__builtin_memcpy(flow->tuple.saddr, arp->sender_ip, 4);
	__builtin_memcpy(flow->tuple.daddr, arp->target_ip, 4);
	return 0;
}

/* The whole frame, from Ethernet on. VLAN tags are skipped here and judged
 * by the caller, which knows whether the endpoint accepts them. */
static __always_inline int parse_frame(void *data, void *end, __u32 len, struct flow *flow)
{
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__u16 proto;

	if (!HAS_BYTES(eth, sizeof(*eth), end))
		return DROP_INVALID_PACKET;
	__builtin_memcpy(flow->eth_src, eth->h_source, ETH_ALEN);
	flow->has_ethernet = 1;
	proto = eth->h_proto;
#pragma unroll
	for (int i = 0; i < VLAN_MAX_TAGS; i++) {
		__u16 *tag;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		flow->vlan_tagged = 1;
		tag = PTR_ADD(data, off);
		if (!HAS_BYTES(tag, 4, end))
			return DROP_INVALID_PACKET;
		proto = tag[1];
		off += 4;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return DROP_VLAN_TAGGED;
	if (proto == bpf_htons(ETH_P_ARP))
		return parse_arp(PTR_ADD(data, off), end, flow);
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(PTR_ADD(data, off), end, off, len - off, flow);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(PTR_ADD(data, off), end, off, len - off, flow);
	return DROP_UNSUPPORTED_L3;
}

/* The options parse_frame() found: IPv4's, or neighbour discovery's. */
static __always_inline int parse_options(void *data, void *end, struct flow *flow)
{
	if (flow->tuple.family == STOCKADE_AF_INET)
		return check_ipv4_options(data, end, flow);
	return parse_nd_options(data, end, flow);
}

/*
 * The parser is a global function, so the verifier checks it once on its
 * own: inlined, every path out of the IPv6 extension loop went on through
 * every policy stage and the program passed the verifier's 1M instruction
 * budget. So is the walk of options, for the same reason: walked inside
 * parse_frame(), on each path through the VLAN tags and the extension
 * headers, it passed the budget again. One wrapper per context type.
 */
__noinline int parse_options_skb(struct __sk_buff *skb, struct flow *flow)
{
	if (!flow)
		return DROP_INVALID_PACKET;
	return parse_options((void *)(long)skb->data, (void *)(long)skb->data_end, flow);
}

__noinline int parse_options_xdp(struct xdp_md *xdp, struct flow *flow)
{
	if (!flow)
		return DROP_INVALID_PACKET;
	return parse_options((void *)(long)xdp->data, (void *)(long)xdp->data_end, flow);
}

__noinline int parse_skb(struct __sk_buff *skb, struct flow *flow)
{
	if (!flow)
		return DROP_INVALID_PACKET;
	return parse_frame((void *)(long)skb->data, (void *)(long)skb->data_end, skb->len, flow);
}

__noinline int parse_xdp(struct xdp_md *xdp, struct flow *flow)
{
	if (!flow)
		return DROP_INVALID_PACKET;
	return parse_frame((void *)(long)xdp->data, (void *)(long)xdp->data_end, xdp->data_end - xdp->data, flow);
}

/*
 * The whole parse: headers, then options, so a drop reason from the headers
 * comes first. The entry point calls both: parse_options_*() called from
 * parse_*() took three frames' stack, past the verifier's 512 bytes.
 */
static __always_inline int parse_packet(void *ctx, struct flow *flow, int is_xdp)
{
	int parsed = is_xdp ? parse_xdp(ctx, flow) : parse_skb(ctx, flow);

	if (parsed < 0 || flow->options_off == flow->options_end)
		return parsed;
	return is_xdp ? parse_options_xdp(ctx, flow) : parse_options_skb(ctx, flow);
}

#endif /* STOCKADE_BPF_LIB_PARSE_H */

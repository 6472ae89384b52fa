/* SPDX-License-Identifier: Apache-2.0 */
/*
 * conntrack and conntrack4: LRU hashes of flows seen at one endpoint
 * interface, IPv4 in conntrack4 and the rest in conntrack. The tuple is
 * stored in a canonical order (the lower address/port pair first), so a reply
 * finds its flow with the same single lookup as the original direction.
 * Fragments: LRU hash that carries the first fragment's ports to the rest.
 */
#ifndef STOCKADE_MAPS_CONNTRACK_H
#define STOCKADE_MAPS_CONNTRACK_H

#include "abi_common.h"

#define STOCKADE_CT_MAX 524288
#define STOCKADE_FRAG_MAX 8192

struct ct_key {
	__u8 addr_a[16];  /* network order; the lower (address, port) pair */
	__u8 addr_b[16];  /* network order */
	__u16 port_a;     /* network order; ICMP echo: the identifier */
	__u16 port_b;     /* network order */
	__u32 ifindex;    /* host order; the endpoint interface */
	/* host order; the namespace of that interface. An ifindex alone repeats
	 * across namespaces (every eth0 of a veth made inside its namespace is 2):
	 * without the cookie, one endpoint's egress entry let the same flow into
	 * another endpoint as established. */
	__u64 netns_cookie;
	__u8 protocol;    /* IPPROTO_* */
	__u8 family;      /* STOCKADE_AF_* */
	/* 1 for an ICMP echo, whose identifier stands in for the ports; 0 for
	 * every other message. Without it an echo with identifier 0 had the key
	 * of every other ICMP query between the two, and let those pass as its. */
	__u8 icmp_echo;
	__u8 pad;         /* must be zero */
	__u32 pad2;       /* must be zero */
};
STOCKADE_ABI_SIZE(struct ct_key, 56);
STOCKADE_ABI_OFFSET(struct ct_key, port_a, 32);
STOCKADE_ABI_OFFSET(struct ct_key, ifindex, 36);
STOCKADE_ABI_OFFSET(struct ct_key, netns_cookie, 40);
STOCKADE_ABI_OFFSET(struct ct_key, icmp_echo, 50);

/*
 * conntrack4: IPv4 flows, the most of them, in a key of half the size. The
 * hash of the key is most of a lookup's cost (stockade-microbench's stages:
 * 26 ns with struct ct_key, 17 with this, for IPv4 UDP on a fast run). The fields mean what struct
 * ct_key's do; conntrack holds the flows of every other family.
 */
struct ct4_key {
	__u64 netns_cookie; /* host order */
	__u32 addr_a;       /* network order; the lower (address, port) pair */
	__u32 addr_b;       /* network order */
	__u16 port_a;       /* network order */
	__u16 port_b;       /* network order */
	__u32 ifindex;      /* host order */
	__u8 protocol;      /* IPPROTO_* */
	__u8 icmp_echo;
	__u16 pad;          /* must be zero */
	__u32 pad2;         /* must be zero */
};
STOCKADE_ABI_SIZE(struct ct4_key, 32);
STOCKADE_ABI_OFFSET(struct ct4_key, addr_a, 8);
STOCKADE_ABI_OFFSET(struct ct4_key, port_a, 16);
STOCKADE_ABI_OFFSET(struct ct4_key, ifindex, 20);
STOCKADE_ABI_OFFSET(struct ct4_key, protocol, 24);

enum ct_flags {
	/* The flow's first packet came from side a of the key. */
	CT_F_ORIGIN_IS_A = 1u << 0,
	/* Allowed by an audit verdict, or under a TLS requirement that only
	 * reports (POLICY_F_AUDIT): reply and follow-ups are audited too. */
	CT_F_AUDIT = 1u << 1,
	CT_F_SEEN_REPLY = 1u << 2,
	/* FIN seen from the origin / from the reply side: both means closed. */
	CT_F_FIN_ORIGIN = 1u << 3,
	CT_F_FIN_REPLY = 1u << 4,
	/* 1u << 5 is free: remembered denies live in their own map (denied_flows.h). */
	/* Allowed by a requireTLS entry: see tls_state. */
	CT_F_TLS_REQUIRED = 1u << 6,
};

/* What the client sent first on a TCP flow. */
enum ct_tls_state {
	CT_TLS_UNSEEN = 0,       /* no payload from the client yet */
	CT_TLS_CLIENT_HELLO = 1, /* a TLS handshake record with a ClientHello */
	CT_TLS_PLAINTEXT = 2,    /* anything else */
};

enum ct_tcp_state {
	CT_TCP_NONE = 0, /* not TCP */
	CT_TCP_SYN_SENT = 1,
	CT_TCP_ESTABLISHED = 2,
	CT_TCP_CLOSING = 3, /* FIN seen */
	CT_TCP_CLOSED = 4,  /* RST seen, or FIN both ways */
};

struct ct_entry {
	__u64 expires_ns;      /* bpf_ktime_get_ns() clock */
	__u64 packets;         /* both directions */
	__u64 bytes;
	__u32 rule_id;         /* the rule that allowed the first packet */
	__u32 policy_revision; /* endpoint revision the verdict was made under */
	__u8 direction;        /* enum stockade_direction of the first packet */
	__u8 flags;            /* enum ct_flags */
	__u8 tcp_state;        /* enum ct_tcp_state */
	__u8 tcp_flags_seen;   /* OR of TCP flags, both directions */
	__u16 policy_port;     /* network order; what policy matched: dport or ICMP type */
	__u8 tls_state;        /* enum ct_tls_state */
	__u8 pad;              /* must be zero */
};
STOCKADE_ABI_SIZE(struct ct_entry, 40);
STOCKADE_ABI_OFFSET(struct ct_entry, rule_id, 24);
STOCKADE_ABI_OFFSET(struct ct_entry, direction, 32);
STOCKADE_ABI_OFFSET(struct ct_entry, tls_state, 38);

struct frag_key {
	__u8 saddr[16]; /* network order */
	__u8 daddr[16]; /* network order */
	__u32 id;       /* network order; IPv4 ids use the low 16 bits */
	__u8 protocol;
	__u8 family;
	__u16 pad;
};
STOCKADE_ABI_SIZE(struct frag_key, 40);

struct frag_value {
	__u16 sport;       /* network order */
	__u16 dport;       /* network order */
	__u16 policy_port; /* network order; the ICMP type for ICMP */
	/* IPPROTO_*: the first fragment's upper layer. An IPv6 later fragment
	 * names only what follows its fragment header, which may be an
	 * extension header (destination options) and not the protocol. */
	__u8 protocol;
	__u8 icmp_echo; /* the first fragment's: see ct_key */
};
STOCKADE_ABI_SIZE(struct frag_value, 8);
STOCKADE_ABI_OFFSET(struct frag_value, protocol, 6);
STOCKADE_ABI_OFFSET(struct frag_value, icmp_echo, 7);

#endif /* STOCKADE_MAPS_CONNTRACK_H */

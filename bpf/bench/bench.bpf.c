// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark programs of stockade-microbench and stockade-bench.
 *
 *   ref_pass            the floor: return at once
 *   ref_drop            drops everything: the ceiling of a drop program, which
 *                       stockade-bench's flood puts beside the real ones (tc-drop)
 *   ref_min_filter      a minimal filter: Ethernet/IP/L4 parse and one hash lookup
 *   ref_min_drop        the least a filter that decides by interface and flow
 *   ref_min_pass        does, before it drops or passes: stockade-bench's
 *                       tc-min-filter, the floor of any such filter
 *   bench_new_flow      stockade's TC ingress on a packet whose source port changes
 *                       every run, so each run is a new flow (policy + conntrack insert)
 *   stage_endpoint      stockade's TC ingress cut short, to show where an
 *   stage_conntrack     established packet's time goes: after the parse and the
 *   stage_whole         endpoint record, after the conntrack lookup, and not at all
 *
 * They include the same library as the datapath; nothing is copied. All but
 * ref_drop, ref_min_drop and ref_min_pass run only through BPF_PROG_TEST_RUN.
 * bench_new_flow and the stages share this object's maps, which keep the
 * datapath's sizes.
 */
#include "lib/enforce.h"

char LICENSE[] SEC("license") = "GPL";

struct min_filter_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 protocol;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct min_filter_key);
	__type(value, __u32);
} min_filter_allow SEC(".maps");

SEC("tc")
int ref_pass(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

SEC("tc")
int ref_drop(struct __sk_buff *skb)
{
	return TC_ACT_SHOT;
}

/* The IPv4 5-tuple of a linear frame; 0, or -1 for anything else. */
static __always_inline int min_filter_key_for(void *data, void *end, struct min_filter_key *key)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = PTR_ADD(data, sizeof(*eth));
	__u16 *ports;

	if (!HAS_BYTES(ip, sizeof(*ip), end) || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl < 5)
		return -1;
	ports = PTR_ADD(ip, ip->ihl * 4);
	if (!HAS_BYTES(ports, 4, end))
		return -1;
	key->saddr = ip->saddr;
	key->daddr = ip->daddr;
	key->sport = ports[0];
	key->dport = ports[1];
	key->protocol = ip->protocol;
	return 0;
}

SEC("tc")
int ref_min_filter(struct __sk_buff *skb)
{
	struct min_filter_key key = {};

	if (min_filter_key_for((void *)(long)skb->data, (void *)(long)skb->data_end, &key) < 0)
		return TC_ACT_SHOT;
	return bpf_map_lookup_elem(&min_filter_allow, &key) ? TC_ACT_UNSPEC : TC_ACT_SHOT;
}

/* The least filter's tables, filled by the program itself: after a
 * flow's first frames every lookup finds its entry, as a remembered deny or
 * a conntrack entry would. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct endpoint_key);
	__type(value, __u32);
} min_filter_interfaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct min_filter_key);
	__type(value, __u32);
} min_filter_flows SEC(".maps");

/* Frames that found both entries: the bench checks that nearly all of a
 * flood did, so a frame it failed to parse cannot pass for a decided one. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} min_filter_decided SEC(".maps");

/* The port ref_min_pass drops (network order), set by the bench before load. */
const volatile __u16 min_filter_denied_port = 0;

/*
 * The least that a filter which decides by interface and flow does: pull
 * the headers into the linear part as stockade does (packet_from_skb), parse
 * them into *key, and find the interface and the flow (two hash hits).
 * Returns 1 when both were found, 0 when one was added, -1 for a frame it
 * does not parse; *key is the frame's whenever the result is not -1.
 */
static __always_inline int min_filter_find(struct __sk_buff *skb, enum hook_point hook, struct min_filter_key *key)
{
	struct packet pkt;
	struct endpoint_key interface = {};
	__u32 seen = 1, zero = 0;
	__u64 *decided;
	int found = 1;

	packet_from_skb(&pkt, skb, hook);
	if (min_filter_key_for(pkt.data, pkt.data_end, key) < 0)
		return -1;
	interface.netns_cookie = pkt.netns_cookie;
	interface.ifindex = pkt.ifindex;
	if (!bpf_map_lookup_elem(&min_filter_interfaces, &interface)) {
		bpf_map_update_elem(&min_filter_interfaces, &interface, &seen, BPF_ANY);
		found = 0;
	}
	if (!bpf_map_lookup_elem(&min_filter_flows, key)) {
		bpf_map_update_elem(&min_filter_flows, key, &seen, BPF_ANY);
		found = 0;
	}
	decided = found ? bpf_map_lookup_elem(&min_filter_decided, &zero) : NULL;
	if (decided)
		*decided += 1;
	return found;
}

/* tc-min-filter's flood drop: the most such a filter can reach on the hook. */
SEC("tc")
int ref_min_drop(struct __sk_buff *skb)
{
	struct min_filter_key key = {};

	min_filter_find(skb, HOOK_TC_INGRESS, &key);
	return TC_ACT_SHOT;
}

/* tc-min-filter where stockade-tc enforces the rule set: passes all but
 * min_filter_denied_port, so the bench's denied UDP is still dropped. */
SEC("tc")
int ref_min_pass(struct __sk_buff *skb)
{
	struct min_filter_key key = {};

	if (min_filter_find(skb, HOOK_TC_EGRESS, &key) >= 0 && key.protocol == IPPROTO_UDP &&
	    key.dport == min_filter_denied_port)
		return TC_ACT_SHOT;
	return TC_ACT_UNSPEC;
}

/* Rewrites the UDP/TCP source port of an IPv4 packet from a per-CPU counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} new_flow_counter SEC(".maps");

SEC("tc")
int bench_new_flow(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct iphdr *ip = PTR_ADD(data, sizeof(struct ethhdr));
	__u32 zero = 0, *counter;
	__u16 *ports;

	counter = bpf_map_lookup_elem(&new_flow_counter, &zero);
	if (!counter || !HAS_BYTES(ip, sizeof(*ip), end))
		return TC_ACT_SHOT;
	/* Past the options, if any (ihl is 4 bits: at most 60 bytes). On IPv6
	 * the same offset lies inside the source address (see prog_bench.cc). */
	ports = PTR_ADD(ip, ip->version == 4 ? ip->ihl * 4 : sizeof(*ip));
	if (!HAS_BYTES(ports, 4, end))
		return TC_ACT_SHOT;
	/* A new source address and port every run: 2^32 flows before a repeat. */
	*counter += 1;
	ip->saddr = bpf_htonl(0x0a800000 | (*counter >> 16));
	ports[0] = bpf_htons((__u16)*counter);
	return stockade_tc_decide(skb, HOOK_TC_EGRESS);
}

/*
 * The stages of an established packet, on this object's maps: each passes
 * only when it found what the whole path finds, so a measured run is never
 * a cheaper miss. They follow the path the packet takes: IPv4 TCP and UDP
 * the straight-line read of bpf/lib/established.h, the rest the full parser.
 * stage_conntrack adds the flow on a miss; the repeats after the first
 * measure the hit.
 */
static __always_inline struct endpoint_info *stage_find_endpoint(struct __sk_buff *skb, struct packet *pkt,
								  struct established_headers *h, struct flow *flow)
{
	struct endpoint_info *ep;

	packet_from_skb(pkt, skb, HOOK_TC_INGRESS);
	ep = endpoint_of(pkt);
	if (established_read(pkt, h) < 0) {
		h->ip = NULL;
		if (parse_packet(skb, flow, 0) < 0)
			return NULL;
	}
	return ep;
}

SEC("tc")
int stage_endpoint(struct __sk_buff *skb)
{
	struct packet pkt;
	struct established_headers h;
	struct flow flow = {};

	return stage_find_endpoint(skb, &pkt, &h, &flow) ? TC_ACT_UNSPEC : TC_ACT_SHOT;
}

SEC("tc")
int stage_conntrack(struct __sk_buff *skb)
{
	struct packet pkt;
	struct established_headers h;
	struct flow flow = {};
	struct endpoint_info *ep = stage_find_endpoint(skb, &pkt, &h, &flow);
	struct ct_flow_key key;
	int src_is_a;

	if (!ep)
		return TC_ACT_SHOT;
	if (h.ip) {
		ct4_key_fill(&key.v4, h.ip->saddr, h.ip->daddr, h.ports[0], h.ports[1], h.ip->protocol, 0,
			     pkt.netns_cookie, pkt.ifindex);
		if (bpf_map_lookup_elem(&conntrack4, &key.v4))
			return TC_ACT_UNSPEC;
		/* The first run: the flow is added from the full parse. */
		if (parse_packet(skb, &flow, 0) < 0)
			return TC_ACT_SHOT;
	}
	src_is_a = ct_key_for(&key, &flow.tuple, pkt.netns_cookie, pkt.ifindex);
	if (!h.ip && ct_lookup(&key))
		return TC_ACT_UNSPEC;
	ct_create(&key, src_is_a, &flow, DIR_EGRESS, 0, ep->policy_revision, 0, tls_classify(&pkt, &flow), pkt.len,
		  bpf_ktime_get_coarse_ns());
	return TC_ACT_SHOT;
}

SEC("tc")
int stage_whole(struct __sk_buff *skb)
{
	return stockade_tc_decide(skb, HOOK_TC_INGRESS);
}

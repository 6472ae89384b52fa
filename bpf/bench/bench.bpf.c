// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark programs of stockade-microbench and stockade-bench.
 *
 *   ref_pass            the floor: return at once
 *   ref_drop            drops everything: the ceiling of a drop program, which
 *                       stockade-bench's flood puts beside the real ones (tc-drop)
 *   ref_min_filter      a minimal filter: Ethernet/IP/L4 parse and one hash lookup
 *   ref_min_drop        the least a filter that decides by interface and flow
 *                       does before it drops: the floor of stockade-bench's
 *                       flood for any such filter (tc-min-filter)
 *   bench_new_flow      stockade's TC ingress on a packet whose source port changes
 *                       every run, so each run is a new flow (policy + conntrack insert)
 *
 * They include the same library as the datapath; nothing is copied. All but
 * ref_drop and ref_min_drop run only through BPF_PROG_TEST_RUN.
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

/* ref_min_drop's tables, filled by the program itself: after a flood's
 * first frames every lookup finds its entry, as a remembered deny would. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct endpoint_key);
	__type(value, __u32);
} min_drop_interfaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct min_filter_key);
	__type(value, __u32);
} min_drop_flows SEC(".maps");

/* Frames that found both entries: the bench checks that nearly all did. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} min_drop_decided SEC(".maps");

/*
 * Pulls the headers into the linear part as stockade does (packet_from_skb),
 * parses them, finds the interface and the flow (two hash hits) and drops.
 * A filter that keys its decision on the interface and the flow does no
 * less, so its flood rate is the most such a filter can reach on this hook.
 */
SEC("tc")
int ref_min_drop(struct __sk_buff *skb)
{
	struct packet pkt;
	struct endpoint_key interface = {};
	struct min_filter_key key = {};
	__u32 seen = 1, zero = 0;
	__u64 *decided;

	packet_from_skb(&pkt, skb, HOOK_TC_INGRESS);
	interface.netns_cookie = pkt.netns_cookie;
	interface.ifindex = pkt.ifindex;
	if (!bpf_map_lookup_elem(&min_drop_interfaces, &interface)) {
		bpf_map_update_elem(&min_drop_interfaces, &interface, &seen, BPF_ANY);
		return TC_ACT_SHOT;
	}
	if (min_filter_key_for(pkt.data, pkt.data_end, &key) < 0)
		return TC_ACT_SHOT;
	if (!bpf_map_lookup_elem(&min_drop_flows, &key)) {
		bpf_map_update_elem(&min_drop_flows, &key, &seen, BPF_ANY);
		return TC_ACT_SHOT;
	}
	decided = bpf_map_lookup_elem(&min_drop_decided, &zero);
	if (decided)
		*decided += 1;
	return TC_ACT_SHOT;
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
	struct packet pkt;
	struct flow flow = {};
	__u32 zero = 0, *counter;
	__u16 *ports;
	int parsed;

	counter = bpf_map_lookup_elem(&new_flow_counter, &zero);
	if (!counter || !HAS_BYTES(ip, sizeof(*ip), end))
		return TC_ACT_SHOT;
	ports = PTR_ADD(ip, sizeof(*ip));
	if (!HAS_BYTES(ports, 4, end))
		return TC_ACT_SHOT;
	/* A new source address and port every run: 2^32 flows before a repeat. */
	*counter += 1;
	ip->saddr = bpf_htonl(0x0a800000 | (*counter >> 16));
	ports[0] = bpf_htons((__u16)*counter);

	packet_from_skb(&pkt, skb, HOOK_TC_EGRESS);
	parsed = parse_skb(skb, &flow);
	return stockade_decide(&pkt, &flow, parsed) == VERDICT_DROPPED ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * A test's witness, attached ahead of the datapath on a live interface: it
 * counts the frames it sees and those whose IP header is not (all) in the
 * skb's linear part, and lets every frame go on to the next program.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

enum { FRAMES_SEEN = 0, FRAMES_SPLIT = 1 };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} linear_probe_counts SEC(".maps");

static void bump(__u32 slot)
{
	__u64 *count = bpf_map_lookup_elem(&linear_probe_counts, &slot);

	if (count)
		__sync_fetch_and_add(count, 1);
}

SEC("tc")
int linear_probe(struct __sk_buff *skb)
{
	bump(FRAMES_SEEN);
	if (skb->data_end - skb->data < ETH_HLEN + 20)
		bump(FRAMES_SPLIT);
	return TC_ACT_UNSPEC;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * stockade's datapath: the programs attached to container interfaces. Each is
 * a thin shell around lib/enforce.h: lib/established.h passes an established
 * IPv4 flow and drops a remembered deny's repeat, stockade_decide() decides
 * everything else.
 *
 *   stockade_tc_ingress   TC ingress (what the interface receives)
 *   stockade_tc_egress    TC egress (what the interface sends)
 *   stockade_xdp          XDP in place of TC ingress, where it is faster
 */
#include "lib/enforce.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int stockade_tc_ingress(struct __sk_buff *skb)
{
	return stockade_tc_decide(skb, HOOK_TC_INGRESS);
}

SEC("tc")
int stockade_tc_egress(struct __sk_buff *skb)
{
	return stockade_tc_decide(skb, HOOK_TC_EGRESS);
}

SEC("xdp")
int stockade_xdp(struct xdp_md *xdp)
{
	return stockade_xdp_decide(xdp);
}

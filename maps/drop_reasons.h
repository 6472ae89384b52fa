/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Drop reasons: one negative enum. BPF helpers return either a value >= 0
 * (a parse offset, a verdict to continue with) or one of these, so a reason can
 * never be mistaken for a TC or XDP action code (all >= -1). The reason is also
 * the metrics key (see metrics.h) and the event field.
 */
#ifndef STOCKADE_MAPS_DROP_REASONS_H
#define STOCKADE_MAPS_DROP_REASONS_H

#include "abi_common.h"

#define STOCKADE_REASON_BASE 130

/* X-macro so the C++ string table below cannot fall out of step with the enum. */
#define STOCKADE_DROP_REASONS(X)                                                   \
	X(DROP_INVALID_PACKET, 130, "INVALID_PACKET")                              \
	X(DROP_POLICY_DENIED, 131, "POLICY_DENIED")                                \
	X(DROP_SPOOFED_SOURCE, 132, "SPOOFED_SOURCE")                              \
	X(DROP_ENDPOINT_NOT_READY, 133, "ENDPOINT_NOT_READY")                      \
	X(DROP_ENDPOINT_UNKNOWN, 134, "ENDPOINT_UNKNOWN")                          \
	X(DROP_VLAN_TAGGED, 135, "VLAN_TAGGED")                                    \
	X(DROP_TUNNEL_DENIED, 136, "TUNNEL_DENIED")                                \
	/* 137 is retired (IPV6_EXT_TOO_MANY): a chain longer than RFC 8200's  \
	 * order allows now repeats a header, IPV6_EXT_ORDER. */                 \
	X(DROP_IPV6_EXT_UNKNOWN, 138, "IPV6_EXT_UNKNOWN")                          \
	X(DROP_FRAG_TOO_SMALL, 139, "FRAG_TOO_SMALL")                              \
	X(DROP_FRAG_NO_FIRST, 140, "FRAG_NO_FIRST")                                \
	X(DROP_ND_ROUTER_MSG, 141, "ND_ROUTER_MSG")                                \
	X(DROP_UNSUPPORTED_L3, 142, "UNSUPPORTED_L3")                              \
	X(DROP_CT_MAP_FULL, 143, "CT_MAP_FULL")                                    \
	X(DROP_FRAG_MAP_FULL, 144, "FRAG_MAP_FULL")                                \
	/* 145 is retired: older agents' metrics and events may still carry it. */ \
	X(DROP_IPV6_ROUTING_TYPE0, 146, "IPV6_ROUTING_TYPE0")                      \
	/* Not a packet drop: a ring buffer reservation that failed. */            \
	X(EVENT_LOST, 147, "EVENT_LOST")                                          \
	/* A flow on a requireTLS port whose client spoke first in anything but a \
	 * TLS ClientHello. */                                                     \
	X(DROP_TLS_REQUIRED, 148, "TLS_REQUIRED")                                  \
	/* IPv4 loose or strict source route, or an IPv6 routing header with      \
	 * segments left: the packet names hops past its destination. */         \
	X(DROP_SOURCE_ROUTE, 149, "SOURCE_ROUTE")                                  \
	/* An IPv4 option refused (record route, timestamp, obsolete or unknown)  \
	 * or an option list that does not parse. */                              \
	X(DROP_IPV4_OPTION, 150, "IPV4_OPTION")                                    \
	/* A neighbour discovery link-layer option naming another MAC, or ND      \
	 * options that do not parse. */                                          \
	X(DROP_ND_OPTION, 151, "ND_OPTION")                                        \
	/* Neighbour discovery that RFC 4861 makes invalid (hop limit, code,      \
	 * length) or that comes in a fragment (RFC 6980). */                     \
	X(DROP_ND_INVALID, 152, "ND_INVALID")                                      \
	/* IPv6 extension headers out of RFC 8200's order or repeated. */         \
	X(DROP_IPV6_EXT_ORDER, 153, "IPV6_EXT_ORDER")

enum stockade_drop_reason {
	REASON_NONE = 0, /* forwarded */
#define STOCKADE_REASON_ENUM(name, value, text) name = -(value),
	STOCKADE_DROP_REASONS(STOCKADE_REASON_ENUM)
#undef STOCKADE_REASON_ENUM
};

#define STOCKADE_REASON_LAST 153
/* Metrics slot of a reason: 0 for REASON_NONE, 1.. for the drops. */
#define STOCKADE_REASON_SLOTS (STOCKADE_REASON_LAST - STOCKADE_REASON_BASE + 2)

static inline __u32 stockade_reason_slot(int reason)
{
	if (reason == REASON_NONE)
		return 0;
	return (__u32)(-reason - STOCKADE_REASON_BASE + 1);
}

#ifdef __cplusplus
#include <string_view>
namespace stockade {
/* Name of a reason as operators see it, e.g. "POLICY_DENIED". */
inline std::string_view DropReasonName(int reason)
{
	switch (reason) {
	case REASON_NONE:
		return "FORWARDED";
#define STOCKADE_REASON_CASE(name, value, text) \
	case name:                              \
		return text;
		STOCKADE_DROP_REASONS(STOCKADE_REASON_CASE)
#undef STOCKADE_REASON_CASE
	}
	return "UNKNOWN_REASON";
}
}  // namespace stockade
#endif

#endif /* STOCKADE_MAPS_DROP_REASONS_H */

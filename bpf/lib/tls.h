/* SPDX-License-Identifier: Apache-2.0 */
/*
 * requireTLS: what the client of a TCP flow sends first. Every TCP flow's
 * first client payload is classified once and the answer kept in its
 * conntrack entry (tls_state), so the agent can report plaintext flows even
 * where TLS is not required; after that a flow costs one byte compare. A
 * flow allowed by a requireTLS entry (CT_F_TLS_REQUIRED) whose client spoke
 * first in anything but a TLS ClientHello is cut: that packet and every later
 * one, both ways, drop with TLS_REQUIRED. Audit mode reports and passes.
 *
 * What this proves: the client began with a TLS handshake. Not which
 * certificate, not that the server answered in TLS (docs/policy.md).
 */
#ifndef STOCKADE_BPF_LIB_TLS_H
#define STOCKADE_BPF_LIB_TLS_H

#include "maps.h"
#include "packet.h"
#include "parse.h"
#include "conntrack.h"
#include "identity.h"
#include "record.h"

#define TLS_CONTENT_HANDSHAKE 22
#define TLS_HANDSHAKE_CLIENT_HELLO 1
#define TLS_VERSION_MAJOR 3
#define TLS_VERSION_MINOR_MAX 4 /* SSL 3.0 (0) to TLS 1.3 (4) */
/* A plaintext record is at most 2^14 bytes; RFC 8446 allows 256 more for a
 * protected one. Anything longer is no record a TLS stack sends. */
#define TLS_RECORD_MAX (16384 + 256)
/* legacy_version, random, session id length, one cipher suite with its
 * length, one compression method with its length. */
#define TLS_CLIENT_HELLO_MIN (2 + 32 + 1 + 2 + 2 + 1 + 1)
/* Extensions are at most 2^16 bytes, the rest a few hundred. */
#define TLS_CLIENT_HELLO_MAX (1u << 17)
/* Record header (type, version, length) and handshake header (type, length). */
#define TLS_HEADERS_LEN 9

/*
 * Classifies the client's first payload: a ClientHello, plaintext, or not
 * seen yet (a segment without payload). Reads the packet directly, so TC and
 * XDP share it: packet_from_skb() made the first PACKET_LINEAR_BYTES linear,
 * which holds the payload's first bytes for any header chain a TLS client
 * sends. A payload beyond that, or one the parser could not follow, or a
 * fragment (the rest of the segment would pass unseen), is not a ClientHello.
 */
static __always_inline __u8 tls_classify(const struct packet *pkt, const struct flow *flow)
{
	const __u8 *p;
	__u32 record_len, hello_len;
	__u32 off = flow->payload_off;

	if (flow->tuple.protocol != IPPROTO_TCP)
		return CT_TLS_UNSEEN;
	if (flow->fragment != FRAG_NONE)
		return CT_TLS_PLAINTEXT;
	if (flow->payload_len == 0)
		return CT_TLS_UNSEEN;
	if (flow->payload_len < TLS_HEADERS_LEN)
		return CT_TLS_PLAINTEXT;
	/* Also what the verifier needs: a packet pointer whose offset may reach
	 * 64 KiB gets no range from the bounds check below (overflow guard). */
	if (off > PACKET_LINEAR_BYTES - TLS_HEADERS_LEN)
		return CT_TLS_PLAINTEXT;
	p = PTR_ADD(pkt->data, off);
	if (!HAS_BYTES(p, TLS_HEADERS_LEN, pkt->data_end))
		return CT_TLS_PLAINTEXT;
	if (p[0] != TLS_CONTENT_HANDSHAKE || p[1] != TLS_VERSION_MAJOR || p[2] > TLS_VERSION_MINOR_MAX)
		return CT_TLS_PLAINTEXT;
	record_len = ((__u32)p[3] << 8) | p[4];
	if (record_len < 4 + TLS_CLIENT_HELLO_MIN || record_len > TLS_RECORD_MAX)
		return CT_TLS_PLAINTEXT;
	if (p[5] != TLS_HANDSHAKE_CLIENT_HELLO)
		return CT_TLS_PLAINTEXT;
	/* A ClientHello may continue in later records, so its length may pass the record's. */
	hello_len = ((__u32)p[6] << 16) | ((__u32)p[7] << 8) | p[8];
	if (hello_len < TLS_CLIENT_HELLO_MIN || hello_len > TLS_CLIENT_HELLO_MAX)
		return CT_TLS_PLAINTEXT;
	return CT_TLS_CLIENT_HELLO;
}

/* The flow's TLS requirement only reports. */
static __always_inline int tls_audit_only(const struct endpoint_info *ep, __u8 ct_flags)
{
	return (ep->flags & ENDPOINT_F_AUDIT) || (ct_flags & CT_F_AUDIT);
}

/* The verdict on a flow with these conntrack flags and tls_state: REASON_NONE,
 * or TLS_REQUIRED (with d->verdict set to VERDICT_AUDIT where it only reports). */
static __always_inline int tls_verdict(const struct endpoint_info *ep, __u8 ct_flags, __u8 tls_state,
				       struct decision *d)
{
	if (!(ct_flags & CT_F_TLS_REQUIRED) || tls_state != CT_TLS_PLAINTEXT)
		return REASON_NONE;
	if (tls_audit_only(ep, ct_flags))
		d->verdict = VERDICT_AUDIT;
	return DROP_TLS_REQUIRED;
}

/* A tracked flow's packets skip the policy stage, which names the remote
 * identity for the event; a TLS drop or audit names it here. */
static __always_inline int tls_report(const struct flow *flow, struct decision *d, int reason)
{
	if (reason != REASON_NONE)
		d->remote_identity = identity_of(d->direction == DIR_EGRESS ? flow->tuple.daddr : flow->tuple.saddr,
						 flow->tuple.family);
	return reason;
}

/* tls_nothing_to_read_in_packet() for every later packet of the flow, whichever
 * way it goes and whatever it carries. */
static __always_inline int tls_nothing_to_read_in_flow(const struct ct_entry *e, __u8 protocol)
{
	if (e->tls_state == CT_TLS_UNSEEN)
		return protocol != IPPROTO_TCP;
	return e->tls_state == CT_TLS_CLIENT_HELLO || !(e->flags & CT_F_TLS_REQUIRED);
}

/*
 * Whether tls_check_tracked() has nothing to do for this packet: it would
 * neither change the entry nor object. The steady state of every flow, TLS
 * or not, once its client's first payload has been seen; before that, every
 * packet but the client's with payload (carries_payload: payload bytes, or a
 * fragment, which tls_classify() judges without them).
 */
static __always_inline int tls_nothing_to_read_in_packet(const struct ct_entry *e, __u8 protocol, int is_reply,
							 int carries_payload)
{
	return tls_nothing_to_read_in_flow(e, protocol) ||
	       (e->tls_state == CT_TLS_UNSEEN && (is_reply || !carries_payload));
}

/*
 * A packet of a tracked flow. The first payload from the client decides; a
 * cut flow's packets drop from then on. Audit reports the violation once (on
 * the payload that decided) and lets everything pass.
 */
static __always_inline int tls_check_tracked(const struct packet *pkt, const struct flow *flow,
					     const struct endpoint_info *ep, struct ct_entry *e, int is_reply,
					     struct decision *d, __u64 now)
{
	if (e->tls_state == CT_TLS_UNSEEN) {
		if (flow->tuple.protocol != IPPROTO_TCP)
			return REASON_NONE;
		if (is_reply)
			return REASON_NONE;
		e->tls_state = tls_classify(pkt, flow);
		return tls_report(flow, d, tls_verdict(ep, e->flags, e->tls_state, d));
	}
	if (!(e->flags & CT_F_TLS_REQUIRED) || e->tls_state != CT_TLS_PLAINTEXT || tls_audit_only(ep, e->flags))
		return REASON_NONE;
	/* Cut: closed, so a new SYN on the tuple is a new flow, decided afresh;
	 * kept alive while the peers keep trying. */
	e->tcp_state = CT_TCP_CLOSED;
	if (now + CT_LIFETIME_TCP_CLOSED > e->expires_ns + NS_PER_SEC)
		e->expires_ns = now + CT_LIFETIME_TCP_CLOSED;
	return tls_report(flow, d, DROP_TLS_REQUIRED);
}

#endif /* STOCKADE_BPF_LIB_TLS_H */

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every map the datapath uses, defined once. Types come from maps/, so the
 * agent and the programs cannot disagree on a layout. Capacities are the
 * defaults; the loader may change them before load.
 */
#ifndef STOCKADE_BPF_LIB_MAPS_H
#define STOCKADE_BPF_LIB_MAPS_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STOCKADE_ENDPOINTS_MAX);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STOCKADE_IPCACHE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
} ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STOCKADE_POLICY_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
} policy SEC(".maps");

/* The full-length entries of the policy, see maps/policy.h. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STOCKADE_POLICY_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
} policy_exact SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STOCKADE_CT_MAX);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STOCKADE_CT_MAX);
	__type(key, struct ct4_key);
	__type(value, struct ct_entry);
} conntrack4 SEC(".maps");

/* Established IPv4 flows each CPU passed a moment ago, see maps/flow_cache.h. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STOCKADE_FLOW_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct flow_cache_slot);
} flow_cache SEC(".maps");

/* Remembered denies, see maps/denied_flows.h. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STOCKADE_DENIED_FLOWS_MAX);
	__type(key, struct denied_flow_key);
	__type(value, struct denied_flow);
} denied_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STOCKADE_FRAG_MAX);
	__type(key, struct frag_key);
	__type(value, struct frag_value);
} fragments SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STOCKADE_METRICS_MAX);
	__type(key, __u32);
	__type(value, struct metrics_value);
} metrics SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, STOCKADE_EVENTS_RINGBUF_BYTES);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STOCKADE_EVENT_AGG_MAX);
	__type(key, struct event_agg_key);
	__type(value, struct event_agg_value);
} event_agg SEC(".maps");

/* New-flow record keys each CPU saw lately, see maps/events.h. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_seen_table);
} flow_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stockade_config);
} config SEC(".maps");

static __always_inline struct stockade_config *config_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&config, &zero);
}

#endif /* STOCKADE_BPF_LIB_MAPS_H */

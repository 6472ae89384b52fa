/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bpffs layout. Every instance has its own directory, so parallel test runs
 * and a production agent never share state:
 *   /sys/fs/bpf/stockade/<instance>/<map name>
 *   /sys/fs/bpf/stockade/<instance>/links/<hook>-<ifindex>
 */
#ifndef STOCKADE_MAPS_PINS_H
#define STOCKADE_MAPS_PINS_H

#define STOCKADE_BPFFS_ROOT "/sys/fs/bpf"
#define STOCKADE_PIN_DIR STOCKADE_BPFFS_ROOT "/stockade"
#define STOCKADE_PIN_LINKS_SUBDIR "links"

/* Map names in the BPF object; also their pin file names. */
#define STOCKADE_MAP_ENDPOINTS "endpoints"
#define STOCKADE_MAP_IPCACHE "ipcache"
#define STOCKADE_MAP_POLICY "policy"
#define STOCKADE_MAP_POLICY_EXACT "policy_exact"
#define STOCKADE_MAP_CONNTRACK "conntrack"
#define STOCKADE_MAP_CONNTRACK4 "conntrack4"
#define STOCKADE_MAP_FLOW_CACHE "flow_cache"
#define STOCKADE_MAP_DENIED_FLOWS "denied_flows"
#define STOCKADE_MAP_FRAGMENTS "fragments"
#define STOCKADE_MAP_METRICS "metrics"
#define STOCKADE_MAP_EVENTS "events"
#define STOCKADE_MAP_EVENT_AGG "event_agg"
#define STOCKADE_MAP_FLOW_SEEN "flow_seen"
#define STOCKADE_MAP_CONFIG "config"

#endif /* STOCKADE_MAPS_PINS_H */

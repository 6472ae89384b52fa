/* SPDX-License-Identifier: Apache-2.0 */
/* config: a one-entry array the agent may change while programs run. */
#ifndef STOCKADE_MAPS_CONFIG_H
#define STOCKADE_MAPS_CONFIG_H

#include "abi_common.h"

#define STOCKADE_DEFAULT_EVENT_INTERVAL_NS 1000000000ull

struct stockade_config {
	__u64 event_interval_ns; /* 0: one record per drop */
	/* Namespace of the interfaces XDP runs on; XDP cannot ask the kernel. */
	__u64 host_netns_cookie;
};
STOCKADE_ABI_SIZE(struct stockade_config, 16);

#endif /* STOCKADE_MAPS_CONFIG_H */

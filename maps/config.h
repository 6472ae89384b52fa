/* SPDX-License-Identifier: Apache-2.0 */
/* config: a one-entry array the agent may change while programs run. */
#ifndef STOCKADE_MAPS_CONFIG_H
#define STOCKADE_MAPS_CONFIG_H

#include "abi_common.h"

#define STOCKADE_DEFAULT_EVENT_INTERVAL_NS 1000000000ull

enum stockade_config_flags {
	/* Written by a loader: a restarted agent keeps it as it is. */
	STOCKADE_CONFIG_F_SET = 1u << 0,
	/* No new-flow records (VERDICT_FORWARDED events, bpf/lib/record.h):
	 * stockaded --no-flow-records. A clear bit means records on, the
	 * default, so a config nobody wrote reports flows too. */
	STOCKADE_CONFIG_F_NO_FLOW_RECORDS = 1u << 1,
};

struct stockade_config {
	__u64 event_interval_ns; /* 0: one record per drop */
	__u64 flags;             /* enum stockade_config_flags */
};
STOCKADE_ABI_SIZE(struct stockade_config, 16);

#endif /* STOCKADE_MAPS_CONFIG_H */

/* SPDX-License-Identifier: Apache-2.0 */
/* metrics: per-CPU packet and byte counters by (reason, direction, verdict). */
#ifndef STOCKADE_MAPS_METRICS_H
#define STOCKADE_MAPS_METRICS_H

#include "abi_common.h"
#include "drop_reasons.h"

#define STOCKADE_METRICS_MAX (STOCKADE_REASON_SLOTS * DIR_MAX * VERDICT_MAX)

struct metrics_value {
	__u64 packets;
	__u64 bytes;
};
STOCKADE_ABI_SIZE(struct metrics_value, 16);

/* The array index of a counter; reason REASON_NONE with VERDICT_FORWARDED counts what passed. */
static inline __u32 stockade_metrics_index(int reason, __u32 direction, __u32 verdict)
{
	return (stockade_reason_slot(reason) * DIR_MAX + direction) * VERDICT_MAX + verdict;
}

#endif /* STOCKADE_MAPS_METRICS_H */

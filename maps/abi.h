/* SPDX-License-Identifier: Apache-2.0 */
/* The whole ABI between the BPF programs and the agent. */
#ifndef STOCKADE_MAPS_ABI_H
#define STOCKADE_MAPS_ABI_H

#include "abi_common.h"
#include "drop_reasons.h"
#include "endpoint.h"
#include "ipcache.h"
#include "policy.h"
#include "conntrack.h"
#include "flow_cache.h"
#include "denied_flows.h"
#include "metrics.h"
#include "events.h"
#include "config.h"
#include "pins.h"

#endif /* STOCKADE_MAPS_ABI_H */

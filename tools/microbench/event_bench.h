// SPDX-License-Identifier: Apache-2.0
//
// The drop-event pipeline, measured with the real processes: drops made in
// the kernel (BPF_PROG_TEST_RUN of the real TC program, on the pinned maps of
// a stockaded of the bench's own) go through the ring buffer to the agent and
// on to one `stockade-tail -o json` whose output the bench reads. Every event
// is either delivered or counted lost, at the stage it was lost.
//
//   pipeline: the most events a second that reach the tail, and a run paced
//             at 1M events/s (one record per drop: aggregation off);
//   flood:    >= 500k denied packets/s toward one endpoint with aggregation
//             on; the agent's CPU, and whether the events' counts add up to
//             the flood.
#ifndef STOCKADE_TOOLS_MICROBENCH_EVENT_BENCH_H_
#define STOCKADE_TOOLS_MICROBENCH_EVENT_BENCH_H_

#include "absl/status/status.h"

namespace stockade::microbench {

[[nodiscard]] absl::Status RunEventBench(bool quick);

}  // namespace stockade::microbench

#endif  // STOCKADE_TOOLS_MICROBENCH_EVENT_BENCH_H_

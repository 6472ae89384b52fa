// SPDX-License-Identifier: Apache-2.0
// The ABI's layout is asserted at compile time in maps/; here, the parts of
// it that are logic: reason slots, metrics indexes, reason names.
#include <gtest/gtest.h>

#include <set>

#include "maps/abi.h"

namespace {

TEST(AbiTest, ReasonsAreNegativeAndBelowEveryTcAndXdpCode) {
#define CHECK_REASON(name, value, text) EXPECT_LT(name, -128) << text;
  STOCKADE_DROP_REASONS(CHECK_REASON)
#undef CHECK_REASON
}

TEST(AbiTest, EveryReasonHasItsOwnMetricsSlotAndName) {
  std::set<uint32_t> slots = {stockade_reason_slot(REASON_NONE)};
  std::set<std::string_view> names = {stockade::DropReasonName(REASON_NONE)};
#define CHECK_REASON(name, value, text)                                   \
  EXPECT_TRUE(slots.insert(stockade_reason_slot(name)).second) << text;   \
  EXPECT_LT(stockade_reason_slot(name), uint32_t{STOCKADE_REASON_SLOTS}); \
  EXPECT_EQ(stockade::DropReasonName(name), text);                        \
  names.insert(stockade::DropReasonName(name));
  STOCKADE_DROP_REASONS(CHECK_REASON)
#undef CHECK_REASON
  EXPECT_EQ(slots.size(), names.size());
  EXPECT_EQ(stockade::DropReasonName(-999), "UNKNOWN_REASON");
}

TEST(AbiTest, MetricsIndexesAreDistinctAndInRange) {
  std::set<uint32_t> seen;
  for (int reason : {int(REASON_NONE), int(DROP_INVALID_PACKET), int(EVENT_LOST)}) {
    for (uint32_t dir = 0; dir < DIR_MAX; ++dir) {
      for (uint32_t verdict = 0; verdict < VERDICT_MAX; ++verdict) {
        uint32_t index = stockade_metrics_index(reason, dir, verdict);
        EXPECT_LT(index, uint32_t{STOCKADE_METRICS_MAX});
        EXPECT_TRUE(seen.insert(index).second);
      }
    }
  }
}

}  // namespace

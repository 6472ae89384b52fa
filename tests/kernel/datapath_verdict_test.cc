// SPDX-License-Identifier: Apache-2.0
//
// The verdict matrix (verdict_rows.h), every row run through the real
// programs with BPF_PROG_TEST_RUN against the web endpoint's maps.
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/kernel/verdict_rows.h"

namespace stockade::testing {
namespace {

class VerdictTest : public WebEndpointTest, public ::testing::WithParamInterface<VerdictRow> {};

TEST_P(VerdictTest, TcProgram) {
  const VerdictRow& row = GetParam();
  uint8_t dir = row.hook == Hook::kTcIngress ? DIR_EGRESS : DIR_INGRESS;
  uint8_t verdict = row.passes ? VERDICT_FORWARDED : VERDICT_DROPPED;
  EXPECT_EQ(Passes(row.hook, row.frame), row.passes);
  EXPECT_EQ(Count(row.reason, dir, verdict), 1u) << "counted under " << DropReasonName(row.reason);
  std::vector<drop_event> events = DrainEvents();
  if (row.passes) {
    // A passing packet reports itself only as a new flow: one forwarded
    // record if it made a conntrack entry (ARP, neighbour discovery and
    // other packets that are no flow make none).
    auto flows = dp_->conntrack().Count();
    ASSERT_TRUE(flows.ok()) << flows.status();
    ASSERT_EQ(events.size(), *flows);
    for (const drop_event& e : events) {
      EXPECT_EQ(e.verdict, VERDICT_FORWARDED);
      EXPECT_EQ(e.reason, REASON_NONE);
      EXPECT_EQ(e.direction, dir);
      EXPECT_EQ(e.count, 1u);
    }
  } else {
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].reason, row.reason) << DropReasonName(events[0].reason);
    EXPECT_EQ(events[0].rule_id, row.rule_id);
    EXPECT_EQ(events[0].verdict, VERDICT_DROPPED);
    EXPECT_EQ(events[0].direction, dir);
    EXPECT_EQ(events[0].count, 1u);
  }
}

std::string RowName(const ::testing::TestParamInfo<VerdictRow>& info) {
  std::string name;
  for (char c : info.param.description) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return absl::StrCat(info.index, "_", name.substr(0, 60));
}

INSTANTIATE_TEST_SUITE_P(Matrix, VerdictTest, ::testing::ValuesIn(VerdictRows()), RowName);

// XDP replaces TC ingress on a host-side veth: what web sends must get the
// same verdict there. In XDP a VLAN tag stays in the frame, so the VLAN rows
// test the in-frame path.
class XdpVerdictTest : public VerdictTest {};

TEST_P(XdpVerdictTest, AgreesWithTcOnWhatWebSends) {
  const VerdictRow& row = GetParam();
  EXPECT_EQ(Passes(Hook::kXdp, row.frame), row.passes);
  EXPECT_EQ(Count(row.reason, DIR_EGRESS, row.passes ? VERDICT_FORWARDED : VERDICT_DROPPED), 1u);
}

std::vector<VerdictRow> RowsWebSends() {
  std::vector<VerdictRow> rows;
  for (VerdictRow& row : VerdictRows())
    if (row.hook == Hook::kTcIngress) rows.push_back(std::move(row));
  return rows;
}

INSTANTIATE_TEST_SUITE_P(Matrix, XdpVerdictTest, ::testing::ValuesIn(RowsWebSends()), RowName);

}  // namespace
}  // namespace stockade::testing

// SPDX-License-Identifier: Apache-2.0
//
// Identity allocation: stable across a restart through the saved table, never
// reusing an id, and a state file that is checked before it is trusted.
#include "stockade/identity/identity_allocator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

namespace stockade {
namespace {

using ::testing::HasSubstr;

const LabelSet kDb = {{"tier", "db"}};
const LabelSet kWeb = {{"tier", "web"}};

IpPrefix Prefix(const char* text) { return ParseIpPrefix(text).value(); }

TEST(IdentityAllocatorTest, SameLabelsSameIdentityFromTheFirstAllocated) {
  IdentityAllocator allocator;
  const uint32_t db = allocator.ForLabels(kDb).value();
  const uint32_t web = allocator.ForLabels(kWeb).value();
  EXPECT_EQ(db, static_cast<uint32_t>(STOCKADE_IDENTITY_FIRST_ALLOCATED));
  EXPECT_NE(web, db);
  EXPECT_EQ(allocator.ForLabels(LabelSet{{"tier", "db"}}).value(), db);
}

TEST(IdentityAllocatorTest, NoLabelsIsUnmanaged) {
  IdentityAllocator allocator;
  EXPECT_EQ(allocator.ForLabels({}).value(), static_cast<uint32_t>(IDENTITY_UNMANAGED));
  EXPECT_TRUE(allocator.table().labels.empty());
}

TEST(IdentityAllocatorTest, RestartFromSavedTableKeepsIdentities) {
  IdentityAllocator before;
  const uint32_t db = before.ForLabels(kDb).value();
  const uint32_t cidr = before.ForCidr(Prefix("198.51.100.0/24")).value();
  const uint32_t web = before.ForLabels(kWeb).value();

  absl::StatusOr<IdentityTable> saved = ParseIdentityTable(SerializeIdentityTable(before.table()));
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(*saved, before.table());
  absl::StatusOr<IdentityAllocator> after = IdentityAllocator::FromTable(*saved);
  ASSERT_TRUE(after.ok()) << after.status();

  // Asked in another order after the restart: the ids stay.
  EXPECT_EQ(after->ForLabels(kWeb).value(), web);
  EXPECT_EQ(after->ForCidr(Prefix("198.51.100.0/24")).value(), cidr);
  EXPECT_EQ(after->ForLabels(kDb).value(), db);
  const uint32_t fresh = after->ForLabels({{"tier", "cache"}}).value();
  EXPECT_GT(fresh, std::max({db, cidr, web}));
}

TEST(IdentityAllocatorTest, ReleasedIdIsNeverHandedOutAgain) {
  IdentityAllocator allocator;
  const uint32_t first = allocator.ForLabels(kDb).value();
  allocator.Release(first);
  EXPECT_TRUE(allocator.table().labels.empty());
  const uint32_t again = allocator.ForLabels(kDb).value();
  EXPECT_NE(again, first);

  // Nor after a restart: the saved table remembers how far ids went.
  allocator.Release(again);
  IdentityAllocator restarted =
      IdentityAllocator::FromTable(ParseIdentityTable(SerializeIdentityTable(allocator.table())).value()).value();
  const uint32_t third = restarted.ForLabels(kWeb).value();
  EXPECT_NE(third, first);
  EXPECT_NE(third, again);
}

TEST(IdentityAllocatorTest, RunningOutOfIdsIsAnError) {
  IdentityTable table;
  table.next_id = std::numeric_limits<uint32_t>::max() - 1;
  IdentityAllocator allocator = IdentityAllocator::FromTable(table).value();
  EXPECT_TRUE(allocator.ForLabels(kDb).ok());
  absl::StatusOr<uint32_t> none = allocator.ForLabels(kWeb);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(allocator.ForLabels(kDb).value(), std::numeric_limits<uint32_t>::max() - 1);
}

TEST(IdentityAllocatorTest, FormatIdentityNamesReservedOnes) {
  EXPECT_EQ(FormatIdentity(IDENTITY_ANY), "any");
  EXPECT_EQ(FormatIdentity(IDENTITY_HOST), "host");
  EXPECT_EQ(FormatIdentity(IDENTITY_WORLD), "world");
  EXPECT_EQ(FormatIdentity(IDENTITY_UNMANAGED), "unmanaged");
  EXPECT_EQ(FormatIdentity(300), "300");
}

struct BadTable {
  const char* json;
  const char* error;
};

class IdentityTableErrorTest : public ::testing::TestWithParam<BadTable> {};

TEST_P(IdentityTableErrorTest, IsRejectedWithAClearReason) {
  absl::StatusOr<IdentityTable> table = ParseIdentityTable(GetParam().json);
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(table.status().message()), HasSubstr(GetParam().error));
}

INSTANTIATE_TEST_SUITE_P(
    Tables, IdentityTableErrorTest,
    ::testing::Values(
        BadTable{"{not json", "identity table: "},
        BadTable{R"({"version": 2, "next_id": 256, "labels": [], "cidrs": []})", "version 2 is not supported"},
        BadTable{R"({"version": 1, "labels": [], "cidrs": []})", "next_id: missing"},
        BadTable{R"({"version": 1, "next_id": "x", "labels": [], "cidrs": []})", "next_id: expected number"},
        BadTable{R"({"version": 1, "next_id": 300, "labels": [{"id": 3, "labels": {"a": "b"}}], "cidrs": []})",
                 "id 3 is reserved"},
        BadTable{R"({"version": 1, "next_id": 300, "labels": [{"id": 256, "labels": {"a": "b"}}],
                     "cidrs": [{"id": 256, "cidr": "10.0.0.0/8"}]})",
                 "id 256 is used by both"},
        BadTable{R"({"version": 1, "next_id": 257, "labels": [{"id": 280, "labels": {"a": "b"}}], "cidrs": []})",
                 "id 280 is not below next_id 257"},
        BadTable{R"({"version": 1, "next_id": 300, "labels": [{"id": 256, "labels": {}}], "cidrs": []})",
                 "the empty label set is IDENTITY_UNMANAGED"},
        BadTable{R"({"version": 1, "next_id": 300, "labels": [{"id": 256, "labels": {"a": 1}}], "cidrs": []})",
                 "labels[0].labels.a: expected string"},
        BadTable{R"({"version": 1, "next_id": 300, "labels": [], "cidrs": [{"id": 256, "cidr": "10.0.0.1/8"}]})",
                 "cidrs[0].cidr: '10.0.0.1/8' has host bits set"}));

}  // namespace
}  // namespace stockade

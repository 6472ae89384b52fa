// SPDX-License-Identifier: Apache-2.0
//
// The store as a reader keeps it: listings and watch changes, a host's
// marker, what is retained while a host republishes and for how long, bad
// records skipped; and the publication diff of a host's own keys.
#include "stockade/store/store_mirror.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace stockade {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

IpAddress Address(absl::string_view text) {
  absl::StatusOr<IpAddress> address = ParseIpAddress(text);
  EXPECT_TRUE(address.ok()) << address.status();
  return address.ok() ? *address : IpAddress{};
}

RemoteEndpoint Endpoint(const std::string& host, absl::string_view address, const std::string& app) {
  return {.address = Address(address), .labels = {{"app", app}}, .host = host, .container_name = app + "-1"};
}

StoreChange Put(const StoreRecord& record) { return {.key = StoreKeyOf(record), .value = EncodeStoreRecord(record)}; }
StoreChange Delete(const std::string& key) { return {.key = key, .deleted = true}; }

std::vector<std::string> Addresses(const std::vector<RemoteEndpoint>& endpoints) {
  std::vector<std::string> out;
  for (const RemoteEndpoint& e : endpoints) out.push_back(e.address.ToString());
  return out;
}

const absl::Time kT0 = absl::FromUnixSeconds(1000);
const absl::Duration kGrace = absl::Seconds(30);

// Host b published two endpoints, its node and its marker; a is this host.
std::vector<StoreChange> ListingOfB() {
  return {Put(Endpoint("b", "10.1.0.2", "web")), Put(Endpoint("b", "10.1.0.3", "db")),
          Put(NodeRecord{.host = "b", .addresses = {Address("192.0.2.2")}}), Put(CompleteMarker{.host = "b"})};
}

TEST(StoreMirrorTest, AListingGivesTheOtherHostsEndpointsAndNodesButNotOwnKeys) {
  StoreMirror mirror("a", kGrace);
  std::vector<StoreChange> keys = ListingOfB();
  keys.push_back(Put(Endpoint("a", "10.0.0.2", "client")));
  EXPECT_TRUE(mirror.ApplyListing(keys, 7, kT0));
  EXPECT_EQ(mirror.revision(), 7);
  EXPECT_THAT(Addresses(mirror.RemoteEndpoints()), ElementsAre("10.1.0.2", "10.1.0.3"));
  EXPECT_EQ(mirror.RemoteEndpoints()[1], Endpoint("b", "10.1.0.3", "db"));
  EXPECT_THAT(mirror.RemoteNodeAddresses(), ElementsAre(Address("192.0.2.2")));
  EXPECT_EQ(mirror.OwnKeys().size(), 1u);
  EXPECT_TRUE(mirror.OwnKeys().contains("/stockade/v1/hosts/a/endpoints/10.0.0.2"));
  ASSERT_EQ(mirror.Hosts().size(), 1u);
  EXPECT_EQ(mirror.Hosts()[0].host, "b");
  EXPECT_TRUE(mirror.Hosts()[0].complete);
  EXPECT_EQ(mirror.Hosts()[0].endpoints, 2u);
  // The same listing again changes nothing.
  EXPECT_FALSE(mirror.ApplyListing(keys, 8, kT0));
}

TEST(StoreMirrorTest, WatchChangesAddChangeAndRemove) {
  StoreMirror mirror("a", kGrace);
  mirror.ApplyListing(ListingOfB(), 7, kT0);
  EXPECT_TRUE(mirror.ApplyChange(Put(Endpoint("b", "10.1.0.4", "cache")), 8, kT0));
  EXPECT_FALSE(mirror.ApplyChange(Put(Endpoint("b", "10.1.0.4", "cache")), 9, kT0)) << "the same value again";
  EXPECT_TRUE(mirror.ApplyChange(Put(Endpoint("b", "10.1.0.4", "queue")), 10, kT0)) << "new labels";
  EXPECT_TRUE(mirror.ApplyChange(Delete("/stockade/v1/hosts/b/endpoints/10.1.0.2"), 11, kT0));
  EXPECT_THAT(Addresses(mirror.RemoteEndpoints()), ElementsAre("10.1.0.3", "10.1.0.4"));
  EXPECT_EQ(mirror.RemoteEndpoints()[1].labels.at("app"), "queue");
  EXPECT_EQ(mirror.revision(), 11);
  // An own key from the watch goes to OwnKeys, and is no other host's change.
  EXPECT_FALSE(mirror.ApplyChange(Put(Endpoint("a", "10.0.0.9", "x")), 12, kT0));
  EXPECT_EQ(mirror.OwnKeys().size(), 1u);
}

TEST(StoreMirrorTest, AHostWhoseMarkerIsDeletedLeavesAtOnce) {
  // A lease that expires or is revoked deletes every key of the host at one
  // revision, in no set order: the marker first here.
  StoreMirror mirror("a", kGrace);
  mirror.ApplyListing(ListingOfB(), 7, kT0);
  mirror.ApplyChange(Delete("/stockade/v1/hosts/b/complete"), 8, kT0);
  mirror.ApplyChange(Delete("/stockade/v1/hosts/b/endpoints/10.1.0.2"), 8, kT0);
  mirror.ApplyChange(Delete("/stockade/v1/hosts/b/node"), 8, kT0);
  mirror.ApplyChange(Delete("/stockade/v1/hosts/b/endpoints/10.1.0.3"), 8, kT0);
  EXPECT_THAT(mirror.RemoteEndpoints(), IsEmpty());
  EXPECT_THAT(mirror.RemoteNodeAddresses(), IsEmpty());
  EXPECT_THAT(mirror.Hosts(), IsEmpty());
}

TEST(StoreMirrorTest, AFreshListingWithoutAHostRetainsItForTheGraceThenDrops) {
  // etcd restarted without its data: the watch broke, the new listing is
  // empty, and b has not republished yet. Its flows must not drop now.
  StoreMirror mirror("a", kGrace);
  mirror.ApplyListing(ListingOfB(), 7, kT0);
  EXPECT_FALSE(mirror.ApplyListing({}, 1, kT0 + absl::Seconds(1)));
  EXPECT_THAT(Addresses(mirror.RemoteEndpoints()), ElementsAre("10.1.0.2", "10.1.0.3"));
  EXPECT_THAT(mirror.RemoteNodeAddresses(), ElementsAre(Address("192.0.2.2")));
  ASSERT_EQ(mirror.Hosts().size(), 1u);
  EXPECT_TRUE(mirror.Hosts()[0].retained);
  EXPECT_FALSE(mirror.Expire(kT0 + absl::Seconds(30)));
  // Another listing inside the grace keeps the deadline of the first.
  EXPECT_FALSE(mirror.ApplyListing({}, 2, kT0 + absl::Seconds(20)));
  EXPECT_TRUE(mirror.Expire(kT0 + absl::Seconds(31)));
  EXPECT_THAT(mirror.RemoteEndpoints(), IsEmpty());
  EXPECT_THAT(mirror.Hosts(), IsEmpty());
}

TEST(StoreMirrorTest, ARepublishingHostKeepsWhatItHadUntilItsMarker) {
  StoreMirror mirror("a", kGrace);
  mirror.ApplyListing(ListingOfB(), 7, kT0);
  mirror.ApplyListing({}, 1, kT0);
  // b republishes one endpoint with new labels; the other is still retained.
  EXPECT_TRUE(mirror.ApplyChange(Put(Endpoint("b", "10.1.0.2", "web2")), 2, kT0));
  EXPECT_THAT(Addresses(mirror.RemoteEndpoints()), ElementsAre("10.1.0.2", "10.1.0.3"));
  EXPECT_EQ(mirror.RemoteEndpoints()[0].labels.at("app"), "web2");
  // Its marker: its listing is complete, and 10.1.0.3 is gone.
  EXPECT_TRUE(mirror.ApplyChange(Put(CompleteMarker{.host = "b"}), 3, kT0));
  EXPECT_THAT(Addresses(mirror.RemoteEndpoints()), ElementsAre("10.1.0.2"));
  EXPECT_THAT(mirror.RemoteNodeAddresses(), IsEmpty()) << "b has not written its node yet";
  EXPECT_FALSE(mirror.Hosts()[0].retained);
}

TEST(StoreMirrorTest, AFreshListingOfACompleteHostIsExact) {
  // A delete missed while the watch was down: the listing says what is there.
  StoreMirror mirror("a", kGrace);
  mirror.ApplyListing(ListingOfB(), 7, kT0);
  std::vector<StoreChange> keys = ListingOfB();
  keys.erase(keys.begin());
  EXPECT_TRUE(mirror.ApplyListing(keys, 9, kT0));
  EXPECT_THAT(Addresses(mirror.RemoteEndpoints()), ElementsAre("10.1.0.3"));
}

TEST(StoreMirrorTest, BadRecordsAreSkippedAndCounted) {
  StoreMirror mirror("a", kGrace);
  std::vector<StoreChange> keys = ListingOfB();
  keys.push_back({.key = "/stockade/v1/hosts/b/endpoints/10.1.0.05", .value = "{}"});
  // A value filed under another host's key.
  keys.push_back({.key = "/stockade/v1/hosts/c/endpoints/10.2.0.2", .value = EncodeStoreRecord(Endpoint("b", "10.2.0.2", "x"))});
  keys.push_back({.key = "/stockade/v1/hosts/c/endpoints/10.2.0.3", .value = "not json"});
  mirror.ApplyListing(keys, 7, kT0);
  EXPECT_THAT(Addresses(mirror.RemoteEndpoints()), ElementsAre("10.1.0.2", "10.1.0.3"));
  EXPECT_EQ(mirror.bad_records(), 3u);
  EXPECT_NE(mirror.last_bad_record().find("/stockade/v1/hosts/c/endpoints/10.2.0.3"), std::string::npos)
      << mirror.last_bad_record();
}

TEST(StoreMirrorTest, PublicationPutsWhatDiffersMarkerLastAndDeletesTheRest) {
  const std::map<std::string, std::string> wanted =
      WantedPublication("a", {Endpoint("x", "10.0.0.2", "web"), Endpoint("x", "10.0.0.3", "db")}, {Address("192.0.2.1")});
  ASSERT_EQ(wanted.size(), 4u);
  EXPECT_TRUE(wanted.contains("/stockade/v1/hosts/a/endpoints/10.0.0.2")) << "filed under this host";
  // Nothing there yet: every key, the marker last.
  PublicationDiff first = DiffPublication(wanted, {});
  ASSERT_EQ(first.puts.size(), 4u);
  EXPECT_EQ(first.puts.back().first, "/stockade/v1/hosts/a/complete");
  EXPECT_THAT(first.deletes, IsEmpty());
  // Everything there: nothing to do.
  EXPECT_TRUE(DiffPublication(wanted, wanted).empty());
  // One stale key, one changed value.
  std::map<std::string, std::string> observed = wanted;
  observed["/stockade/v1/hosts/a/endpoints/10.0.0.9"] = "{}";
  observed["/stockade/v1/hosts/a/endpoints/10.0.0.3"] = "{}";
  PublicationDiff diff = DiffPublication(wanted, observed);
  ASSERT_EQ(diff.puts.size(), 1u);
  EXPECT_EQ(diff.puts[0].first, "/stockade/v1/hosts/a/endpoints/10.0.0.3");
  EXPECT_THAT(diff.deletes, ElementsAre("/stockade/v1/hosts/a/endpoints/10.0.0.9"));
}

}  // namespace
}  // namespace stockade

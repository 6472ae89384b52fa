// SPDX-License-Identifier: Apache-2.0
//
// The store's key layout and record codec: each record round-trips through
// its key and value, and every malformed key or value is refused with an
// error that names the key.
#include "stockade/store/endpoint_record.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace stockade {
namespace {

using ::testing::HasSubstr;

IpAddress Address(absl::string_view text) {
  absl::StatusOr<IpAddress> address = ParseIpAddress(text);
  EXPECT_TRUE(address.ok()) << address.status();
  return address.ok() ? *address : IpAddress{};
}

void ExpectRoundTrip(const StoreRecord& record) {
  const std::string key = StoreKeyOf(record);
  absl::StatusOr<StoreRecord> decoded = DecodeStoreRecord(key, EncodeStoreRecord(record));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, record) << key;
}

TEST(EndpointRecordTest, KeysFollowTheDocumentedLayout) {
  EXPECT_EQ(HostKeyPrefix("host-a"), "/stockade/v1/hosts/host-a/");
  EXPECT_EQ(EndpointKey("host-a", Address("10.0.0.5")), "/stockade/v1/hosts/host-a/endpoints/10.0.0.5");
  EXPECT_EQ(EndpointKey("host-a", Address("fd00:0::5")), "/stockade/v1/hosts/host-a/endpoints/fd00::5");
  EXPECT_EQ(NodeKey("host-a"), "/stockade/v1/hosts/host-a/node");
  EXPECT_EQ(CompleteKey("host-a"), "/stockade/v1/hosts/host-a/complete");
  EXPECT_TRUE(absl::StartsWith(NodeKey("x"), kStoreHostsPrefix));
}

TEST(EndpointRecordTest, EveryRecordKindRoundTrips) {
  ExpectRoundTrip(RemoteEndpoint{.address = Address("10.0.0.5"),
                                 .labels = {{"app", "web"}, {"compose.service", "frontend"}},
                                 .host = "host-a",
                                 .container_name = "web-1"});
  ExpectRoundTrip(RemoteEndpoint{.address = Address("fd00::5"), .host = "h.example.org"});
  ExpectRoundTrip(NodeRecord{.host = "host_b", .addresses = {Address("192.168.1.2"), Address("fd00::2")}});
  ExpectRoundTrip(NodeRecord{.host = "host_b"});
  ExpectRoundTrip(CompleteMarker{.host = "host-a"});
}

TEST(EndpointRecordTest, EncodedEndpointIsTheDocumentedJson) {
  const RemoteEndpoint endpoint{
      .address = Address("10.0.0.5"), .labels = {{"app", "web"}}, .host = "a", .container_name = "web-1"};
  EXPECT_EQ(EncodeStoreRecord(endpoint),
            R"({"address":"10.0.0.5","container":"web-1","host":"a","labels":{"app":"web"}})");
}

TEST(EndpointRecordTest, KeysAreParsedWithoutTheirValues) {
  absl::StatusOr<StoreKey> endpoint = ParseStoreKey("/stockade/v1/hosts/a/endpoints/fd00::7");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  EXPECT_EQ(*endpoint, (StoreKey{.kind = StoreKey::Kind::kEndpoint, .host = "a", .address = Address("fd00::7")}));
  absl::StatusOr<StoreKey> node = ParseStoreKey("/stockade/v1/hosts/a/node");
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(node->kind, StoreKey::Kind::kNode);
  absl::StatusOr<StoreKey> complete = ParseStoreKey("/stockade/v1/hosts/a/complete");
  ASSERT_TRUE(complete.ok()) << complete.status();
  EXPECT_EQ(complete->kind, StoreKey::Kind::kComplete);
}

TEST(EndpointRecordTest, KeysOutsideTheLayoutAreRefusedByName) {
  struct Row {
    const char* key;
    const char* why;
  };
  const Row rows[] = {
      {"/stockade/v2/hosts/a/node", "not under /stockade/v1/hosts/"},
      {"/stockade/v1/hosts/a", "no record after the host id"},
      {"/stockade/v1/hosts//node", "must be 1 to 253 characters"},
      {"/stockade/v1/hosts/../node", "not a usable path segment"},
      {"/stockade/v1/hosts/a b/node", "may hold only letters"},
      {"/stockade/v1/hosts/a/endpoints/10.0.0.05", "10.0.0.05"},
      {"/stockade/v1/hosts/a/endpoints/FD00::1", "not in canonical form (fd00::1)"},
      {"/stockade/v1/hosts/a/endpoints/", "endpoints/"},
      {"/stockade/v1/hosts/a/nodes", "unknown record 'nodes'"},
      {"/stockade/v1/hosts/a/node/x", "unknown record 'node/x'"},
  };
  for (const Row& row : rows) {
    absl::StatusOr<StoreKey> parsed = ParseStoreKey(row.key);
    ASSERT_FALSE(parsed.ok()) << row.key;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << row.key;
    EXPECT_THAT(parsed.status().message(), HasSubstr(absl::StrCat("store key ", row.key, ": "))) << row.key;
    EXPECT_THAT(parsed.status().message(), HasSubstr(row.why)) << row.key;
  }
}

TEST(EndpointRecordTest, BadValuesAreRefusedNamingTheKey) {
  const std::string endpoint_key = "/stockade/v1/hosts/a/endpoints/10.0.0.5";
  struct Row {
    std::string key;
    const char* value;
    const char* why;
  };
  const Row rows[] = {
      {endpoint_key, "{\"host\":", "value is not JSON"},
      {endpoint_key, "[1]", "value is not a JSON object"},
      {endpoint_key, R"({"address":"10.0.0.5","labels":{}})", "missing member \"host\""},
      {endpoint_key, R"({"host":"b","address":"10.0.0.5","labels":{}})", "\"host\" is 'b' but the key is of host 'a'"},
      {endpoint_key, R"({"host":"a","address":"10.0.0.6","labels":{}})", "\"address\" is 10.0.0.6 but the key is of"},
      {endpoint_key, R"({"host":"a","address":"10.0.0.5"})", "missing member \"labels\""},
      {endpoint_key, R"({"host":"a","address":"10.0.0.5","labels":{"app":1}})", "label \"app\" must be a string"},
      {endpoint_key, R"({"host":"a","address":"10.0.0.5","labels":{"":"x"}})", "empty label name"},
      {endpoint_key, R"({"host":"a","address":5,"labels":{}})", "\"address\" must be a string"},
      {endpoint_key, R"({"host":"a","address":"10.0.0.5","labels":{},"container":7})",
       "\"container\" must be a string"},
      {NodeKey("a"), R"({"host":"a","addresses":"10.0.0.1"})", "\"addresses\" must be an array"},
      {NodeKey("a"), R"({"host":"a","addresses":["10.0.0.1","bogus"]})", "bogus"},
      {CompleteKey("a"), R"({"host":"b"})", "\"host\" is 'b'"},
      {"/stockade/v1/hosts/a/other", R"({"host":"a"})", "unknown record 'other'"},
  };
  for (const Row& row : rows) {
    absl::StatusOr<StoreRecord> decoded = DecodeStoreRecord(row.key, row.value);
    ASSERT_FALSE(decoded.ok()) << row.key << " " << row.value;
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument) << row.value;
    EXPECT_THAT(decoded.status().message(), HasSubstr(absl::StrCat("store key ", row.key, ": "))) << row.value;
    EXPECT_THAT(decoded.status().message(), HasSubstr(row.why)) << row.value;
  }
}

TEST(EndpointRecordTest, HostIdsArePathSegments) {
  EXPECT_TRUE(ValidateHostId("node-1.example.org").ok());
  EXPECT_TRUE(ValidateHostId(std::string(253, 'a')).ok());
  EXPECT_FALSE(ValidateHostId(std::string(254, 'a')).ok());
  EXPECT_FALSE(ValidateHostId("a/b").ok());
  EXPECT_FALSE(ValidateHostId("").ok());
}

}  // namespace
}  // namespace stockade

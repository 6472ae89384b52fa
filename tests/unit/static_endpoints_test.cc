// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "stockade/agent/static_endpoints.h"

namespace stockade {
namespace {

TEST(StaticEndpointsTest, ParsesAnEndpointWithLabelsUnderTheStockadePrefix) {
  auto w = ParseStaticEndpoints(R"(
endpoints:
  - name: web
    netns: /run/netns/web
    interface: eth0
    hook: in-container
    ipv4: 10.0.0.2
    labels: {tier: web}
)",
                                "endpoints.yaml");
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->size(), 1u);
  const Workload& web = (*w)[0];
  EXPECT_EQ(web.id, "static/web");
  EXPECT_EQ(web.labels.at("stockade.tier"), "web");
  ASSERT_EQ(web.interfaces.size(), 1u);
  EXPECT_EQ(web.interfaces[0].placement, HookPlacement::kInContainer);
  EXPECT_EQ(web.interfaces[0].ipv4->ToString(), "10.0.0.2");
  EXPECT_FALSE(web.interfaces[0].ipv6.has_value());
}

TEST(StaticEndpointsTest, ErrorsNameFileLineAndField) {
  auto typo = ParseStaticEndpoints("endpoints:\n  - name: a\n    netns: /x\n    interface: e\n    lables: {}\n", "f.yaml");
  ASSERT_FALSE(typo.ok());
  EXPECT_EQ(typo.status().message(), "f.yaml:5: endpoints[0]: unknown field 'lables'");
  auto family = ParseStaticEndpoints("endpoints:\n  - {name: a, netns: /x, interface: e, ipv4: 'fd00::1'}\n", "f.yaml");
  ASSERT_FALSE(family.ok());
  EXPECT_NE(family.status().message().find("ipv4: wrong address family"), std::string::npos);
  auto missing = ParseStaticEndpoints("endpoints:\n  - {name: a, interface: e}\n", "f.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("'netns' is required"), std::string::npos);
  auto twice = ParseStaticEndpoints("endpoints:\n  - {name: a, netns: /x, interface: e}\n  - {name: a, netns: /y, interface: e}\n",
                                    "f.yaml");
  ASSERT_FALSE(twice.ok());
  // Labels become identities saved as JSON: bytes that are not text are refused where they stand.
  auto bytes = ParseStaticEndpoints("endpoints:\n  - name: a\n    netns: /x\n    interface: e\n    labels: {tier: \"\xff\xfe\"}\n",
                                    "f.yaml");
  ASSERT_FALSE(bytes.ok());
  EXPECT_NE(bytes.status().message().find("f.yaml:5"), std::string::npos) << bytes.status();
  EXPECT_NE(bytes.status().message().find("not UTF-8"), std::string::npos) << bytes.status();
  auto overlong = ParseStaticEndpoints("endpoints:\n  - {name: a, netns: /x, interface: e, labels: {t: \"\xc0\xaf\"}}\n", "f.yaml");
  EXPECT_FALSE(overlong.ok());
  auto text = ParseStaticEndpoints("endpoints:\n  - {name: a, netns: /x, interface: e, labels: {t: \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xb3\"}}\n",
                                   "f.yaml");
  EXPECT_TRUE(text.ok()) << text.status();
  auto broken = ParseStaticEndpoints("endpoints: [\n", "f.yaml");
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().message().rfind("f.yaml:", 0), 0u);
}

}  // namespace
}  // namespace stockade

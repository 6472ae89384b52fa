// SPDX-License-Identifier: Apache-2.0
//
// Which container labels make an identity, on a container and image captured
// from a real dockerd (tests/data/docker) and on hand-made label sets.
#include "stockade/identity/labels.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "stockade/docker/docker_parse.h"

namespace stockade {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string ReadSample(const std::string& name) {
  std::ifstream file(std::string(STOCKADE_DOCKER_TEST_DATA) + "/" + name);
  EXPECT_TRUE(file.good()) << "missing sample " << name;
  std::stringstream content;
  content << file.rdbuf();
  return content.str();
}

TEST(ContainerLabelsTest, RunTimeOverrideOfAnImageLabelCounts) {
  // The image was built with stockade.tier=db and team=payments; the container
  // was run with stockade.tier=web and stockade.test=...
  absl::StatusOr<ContainerInfo> container = ParseContainerInspect(ReadSample("container_inspect_image_labels.json"));
  absl::StatusOr<ImageInfo> image = ParseImageInspect(ReadSample("image_inspect_labelled.json"));
  ASSERT_TRUE(container.ok()) << container.status();
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(container->image_id, image->id);

  StockadeLabels labels = ReadContainerLabels(container->labels, image->labels);
  EXPECT_EQ(labels.identity, (LabelSet{{"test", container->labels.at("stockade.test")}, {"tier", "web"}}));
  EXPECT_THAT(labels.ignored, IsEmpty());
  EXPECT_FALSE(labels.policy_text.has_value());
}

TEST(ContainerLabelsTest, LabelTheImageSetIsIgnoredWithAReason) {
  const LabelMap image = {{"stockade.tier", "db"}, {"team", "payments"}};
  LabelMap container = image;  // what Docker reports when nothing is given at run time
  container["stockade.env"] = "prod";

  StockadeLabels labels = ReadContainerLabels(container, image);
  EXPECT_EQ(labels.identity, (LabelSet{{"env", "prod"}}));
  ASSERT_EQ(labels.ignored.size(), 1u);
  EXPECT_EQ(labels.ignored[0].key, "stockade.tier");
  EXPECT_EQ(labels.ignored[0].value, "db");
  EXPECT_THAT(labels.ignored[0].reason, HasSubstr("set by the image"));
}

TEST(ContainerLabelsTest, ContainerWithOnlyImageLabelsIsUnmanaged) {
  const LabelMap image = {{"stockade.tier", "db"}};
  EXPECT_THAT(ReadContainerLabels(image, image).identity, IsEmpty());
}

TEST(ContainerLabelsTest, ComposeProjectAndServiceJoinTheIdentity) {
  const LabelMap container = {{"com.docker.compose.project", "shop"},
                              {"com.docker.compose.service", "web"},
                              {"com.docker.compose.container-number", "1"},
                              {"stockade.tier", "frontend"},
                              {"maintainer", "someone"}};
  EXPECT_EQ(ReadContainerLabels(container, {}).identity,
            (LabelSet{{"compose.project", "shop"}, {"compose.service", "web"}, {"tier", "frontend"}}));
}

// An image built with compose's labels, run with a plain `docker run`, must
// not become the compose service it names.
TEST(ContainerLabelsTest, ComposeLabelsTheImageSetAreIgnoredWithAReason) {
  const LabelMap image = {{"com.docker.compose.project", "shop"}, {"com.docker.compose.service", "db"}};
  StockadeLabels labels = ReadContainerLabels(image, image);
  EXPECT_THAT(labels.identity, IsEmpty());
  EXPECT_THAT(labels.ignored, ElementsAre(Field(&IgnoredLabel::key, "com.docker.compose.project"),
                                          Field(&IgnoredLabel::key, "com.docker.compose.service")));
  for (const IgnoredLabel& l : labels.ignored) EXPECT_THAT(l.reason, HasSubstr("set by the image"));
}

TEST(ContainerLabelsTest, ComposeLabelsSetAtRunTimeCountOverTheImages) {
  const LabelMap image = {{"com.docker.compose.project", "shop"}, {"com.docker.compose.service", "db"}};
  // compose (or `docker run --label`) gave another service; the project is still the image's.
  const LabelMap container = {{"com.docker.compose.project", "shop"}, {"com.docker.compose.service", "web"}};
  StockadeLabels labels = ReadContainerLabels(container, image);
  EXPECT_EQ(labels.identity, (LabelSet{{"compose.service", "web"}}));
  EXPECT_THAT(labels.ignored, ElementsAre(Field(&IgnoredLabel::key, "com.docker.compose.project")));
}

TEST(ContainerLabelsTest, StockadeLabelCannotPoseAsComposeOrBeNameless) {
  const LabelMap container = {{"stockade.compose.service", "db"}, {"stockade.", "x"}, {"stockade.tier", "web"}};
  StockadeLabels labels = ReadContainerLabels(container, {});
  EXPECT_EQ(labels.identity, (LabelSet{{"tier", "web"}}));
  EXPECT_THAT(labels.ignored, ElementsAre(Field(&IgnoredLabel::key, "stockade."),
                                          Field(&IgnoredLabel::key, "stockade.compose.service")));
}

TEST(ContainerLabelsTest, PolicyLabelIsNotIdentityAndTheImageCannotSetIt) {
  const std::string spec = R"({"ingress": []})";
  StockadeLabels own = ReadContainerLabels({{"stockade.policy", spec}, {"stockade.tier", "db"}}, {});
  EXPECT_EQ(own.policy_text, spec);
  EXPECT_EQ(own.identity, (LabelSet{{"tier", "db"}}));

  StockadeLabels from_image = ReadContainerLabels({{"stockade.policy", spec}}, {{"stockade.policy", spec}});
  EXPECT_FALSE(from_image.policy_text.has_value());
  ASSERT_EQ(from_image.ignored.size(), 1u);
  EXPECT_THAT(from_image.ignored[0].reason, HasSubstr("cannot carry its own policy"));
}

TEST(ContainerLabelsTest, EachAttachedNetworkJoinsAManagedContainersIdentity) {
  StockadeLabels labels = ReadContainerLabels({{"stockade.tier", "db"}}, {}, {"backnet", "frontnet"});
  EXPECT_EQ(labels.identity,
            (LabelSet{{"network.backnet", "attached"}, {"network.frontnet", "attached"}, {"tier", "db"}}));
  EXPECT_THAT(labels.ignored, IsEmpty());
}

// Networks alone do not make a container managed: it stays `unmanaged`, as
// every container without identity labels was before network labels.
TEST(ContainerLabelsTest, NetworksAloneLeaveAContainerUnmanaged) {
  EXPECT_THAT(ReadContainerLabels({{"maintainer", "someone"}}, {}, {"backnet"}).identity, IsEmpty());
  const LabelMap image = {{"stockade.tier", "db"}};
  EXPECT_THAT(ReadContainerLabels(image, image, {"backnet"}).identity, IsEmpty()) << "image labels give nothing";
}

// Only the attachment says a container is on a network: a stockade.network.*
// label, set at run time or by the image, is ignored with the reason and
// neither adds a network nor changes an attached one's value.
TEST(ContainerLabelsTest, NoLabelCanClaimOrOverrideANetwork) {
  const LabelMap image = {{"stockade.network.adminnet", "attached"}};
  LabelMap container = image;
  container["stockade.tier"] = "web";
  container["stockade.network.backnet"] = "attached";
  container["stockade.network.frontnet"] = "detached";
  StockadeLabels labels = ReadContainerLabels(container, image, {"frontnet"});
  EXPECT_EQ(labels.identity, (LabelSet{{"network.frontnet", "attached"}, {"tier", "web"}}));
  EXPECT_THAT(labels.ignored, ElementsAre(Field(&IgnoredLabel::key, "stockade.network.adminnet"),
                                          Field(&IgnoredLabel::key, "stockade.network.backnet"),
                                          Field(&IgnoredLabel::key, "stockade.network.frontnet")));
  EXPECT_THAT(labels.ignored[0].reason, HasSubstr("set by the image"));
  for (size_t i = 1; i < labels.ignored.size(); ++i)
    EXPECT_THAT(labels.ignored[i].reason, HasSubstr("network.* names come from the Docker networks"));

  // A network label alone is no identity label: the container stays unmanaged.
  EXPECT_THAT(ReadContainerLabels({{"stockade.network.backnet", "attached"}}, {}, {"frontnet"}).identity, IsEmpty());
}

TEST(ContainerLabelsTest, FormatLabelsIsOrdered) {
  EXPECT_EQ(FormatLabels({{"tier", "db"}, {"compose.service", "web"}}), "{compose.service=web, tier=db}");
  EXPECT_EQ(FormatLabels({}), "{}");
}

}  // namespace
}  // namespace stockade

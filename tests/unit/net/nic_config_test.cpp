// --net and the "net" key of --config: parsing into VmConfig::nics, and validate()'s checks.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "config/vm_config.h"

namespace gears::vmm::config {
namespace {

Expected<VmConfig> parse(std::vector<std::string> args) {
  std::vector<const char*> argv{"gears-vmm"};
  for (auto& a : args) argv.push_back(a.c_str());
  return parse_args(static_cast<int>(argv.size()), argv.data());
}

class NicConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gears-nic-config-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    kernel = dir + "/vmlinuz";
    overlay = dir + "/overlay.json";
    std::ofstream(kernel) << "k";
    std::ofstream(overlay) << R"({"listen": "127.0.0.1:0"})";
  }
  void TearDown() override {
    for (const char* f : {"/vmlinuz", "/overlay.json", "/cfg.json"}) ::unlink((dir + f).c_str());
    ::rmdir(dir.c_str());
  }
  std::string write_json(const std::string& text) {
    std::string p = dir + "/cfg.json";
    std::ofstream(p) << text;
    return p;
  }
  std::string dir, kernel, overlay;
};

TEST_F(NicConfigTest, CommandLineNicsInOrder) {
  auto c = parse({"--kernel", kernel, "--net", "mac=52:54:00:00:00:01,overlay=" + overlay + ",mtu=1400",
                  "--net", "mac=52:54:00:00:00:02"});
  ASSERT_TRUE(c) << c.error().what();
  ASSERT_EQ(c->nics.size(), 2u);
  EXPECT_EQ(net::to_string(c->nics[0].mac), "52:54:00:00:00:01");
  EXPECT_EQ(c->nics[0].overlay, overlay);
  EXPECT_EQ(c->nics[0].mtu, 1400);
  EXPECT_EQ(net::to_string(c->nics[1].mac), "52:54:00:00:00:02");
  EXPECT_TRUE(c->nics[1].overlay.empty());
  EXPECT_EQ(c->nics[1].mtu, 0);
  EXPECT_TRUE(validate(*c, 0)) << validate(*c, 0).error().what();
}

TEST_F(NicConfigTest, BadSpecsAreOneLineErrors) {
  for (const char* spec : {"", "overlay=x", "mac=52:54:00:00:00", "mac=01:00:5e:00:00:01", "mac=00:00:00:00:00:00",
                           "mac=52:54:00:00:00:01,mtu=67", "mac=52:54:00:00:00:01,mtu=9001",
                           "mac=52:54:00:00:00:01,mtu=x", "mac=52:54:00:00:00:01,speed=10", "mac"}) {
    auto c = parse({"--kernel", kernel, "--net", spec});
    ASSERT_FALSE(c) << spec;
    EXPECT_NE(c.error().what().find("--net"), std::string::npos) << c.error().what();
    EXPECT_EQ(c.error().what().find('\n'), std::string::npos);
  }
  auto c = parse({"--kernel", kernel, "--net"});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().what().find("needs a value"), std::string::npos);
}

TEST_F(NicConfigTest, JsonStringObjectAndList) {
  auto c = parse({"--config", write_json(R"({"net": [
      "mac=52:54:00:00:00:01",
      {"mac": "52:54:00:00:00:02", "overlay": ")" + overlay + R"(", "mtu": 1446}]})")});
  ASSERT_TRUE(c) << c.error().what();
  ASSERT_EQ(c->nics.size(), 2u);
  EXPECT_EQ(c->nics[1].overlay, overlay);
  EXPECT_EQ(c->nics[1].mtu, 1446);

  auto one = parse({"--config", write_json(R"({"net": {"mac": "52:54:00:00:00:03"}})"), "--net", "mac=52:54:00:00:00:04"});
  ASSERT_TRUE(one) << one.error().what();
  ASSERT_EQ(one->nics.size(), 2u);  // the command line adds to the file's NICs
  EXPECT_EQ(net::to_string(one->nics[0].mac), "52:54:00:00:00:03");
}

TEST_F(NicConfigTest, JsonErrors) {
  for (const char* text : {R"({"net": 5})", R"({"net": [{"mac": "52:54:00:00:00:01", "speed": 1}]})",
                           R"({"net": {"overlay": "x"}})", R"({"net": {"mac": 5}})", R"({"net": {"mac": "52:54:00:00:00:01", "mtu": -1}})",
                           R"({"net": {"mac": "52:54:00:00:00:01,mtu=9000"}})"}) {
    auto c = parse({"--config", write_json(text)});
    EXPECT_FALSE(c) << text;
  }
}

TEST_F(NicConfigTest, ValidateChecksFilesDuplicatesAndCount) {
  auto missing = parse({"--kernel", kernel, "--net", "mac=52:54:00:00:00:01,overlay=" + dir + "/nope.json"});
  ASSERT_TRUE(missing);
  auto v = validate(*missing, 0);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().what().find("nope.json"), std::string::npos);

  auto dup = parse({"--kernel", kernel, "--net", "mac=52:54:00:00:00:01", "--net", "mac=52-54-00-00-00-01"});
  ASSERT_TRUE(dup);
  v = validate(*dup, 0);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().what().find("twice"), std::string::npos);

  std::vector<std::string> args{"--kernel", kernel};
  for (int i = 0; i < 9; ++i) {
    args.push_back("--net");
    args.push_back("mac=52:54:00:00:00:1" + std::to_string(i));
  }
  auto many = parse(args);
  ASSERT_TRUE(many);
  EXPECT_FALSE(validate(*many, 0));
}

TEST(NicUsage, DocumentsNet) {
  EXPECT_NE(usage().find("--net mac=MAC"), std::string::npos);
}

}  // namespace
}  // namespace gears::vmm::config

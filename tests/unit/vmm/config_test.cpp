// VM configuration: JSON file, command line, precedence, validation, kernel command line.
#include "config/vm_config.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "builder.h"
#include "core/kvm_system.h"

namespace gears::vmm::config {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gears-vmm-config-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    kernel = dir + "/vmlinuz";
    std::ofstream(kernel) << "k";
  }
  void TearDown() override {
    for (const char* f : {"/vmlinuz", "/cfg.json"}) ::unlink((dir + f).c_str());
    ::rmdir(dir.c_str());
  }
  std::string write_json(const std::string& text) {
    std::string p = dir + "/cfg.json";
    std::ofstream(p) << text;
    return p;
  }
  std::string dir, kernel;
};

Expected<VmConfig> parse(std::vector<std::string> args) {
  std::vector<const char*> argv{"gears-vmm"};
  for (auto& a : args) argv.push_back(a.c_str());
  return parse_args(static_cast<int>(argv.size()), argv.data());
}

TEST(Size, Suffixes) {
  EXPECT_EQ(*parse_size("512M"), 512ULL << 20);
  EXPECT_EQ(*parse_size("2G"), 2ULL << 30);
  EXPECT_EQ(*parse_size("1024"), 1024ULL << 20);
  EXPECT_EQ(*parse_size("65536K"), 64ULL << 20);
  EXPECT_FALSE(parse_size("12X"));
  EXPECT_FALSE(parse_size("-5M"));
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("99999999999999999999G"));
}

TEST_F(ConfigTest, CommandLine) {
  auto c = parse({"--kernel", kernel, "--cpus", "2", "--mem", "1G", "--cmdline", "quiet", "--console", "file:/tmp/x",
                  "--virtio-blk", "/a", "--virtio-blk", "/b", "--force-pvm"});
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->kernel, kernel);
  EXPECT_EQ(c->vcpus, 2u);
  EXPECT_EQ(c->mem_bytes, 1ULL << 30);
  EXPECT_EQ(c->cmdline, "quiet");
  EXPECT_EQ(c->console.kind, devices::ConsoleSpec::Kind::File);
  EXPECT_EQ(c->console.path, "/tmp/x");
  EXPECT_EQ(c->virtio_blk.size(), 2u);
  EXPECT_TRUE(c->force_pvm);
}

TEST_F(ConfigTest, BadFlags) {
  EXPECT_FALSE(parse({"--cpus"}));
  EXPECT_FALSE(parse({"--cpus", "two"}));
  EXPECT_FALSE(parse({"--cpus", "-1"}));
  EXPECT_FALSE(parse({"--mem", "lots"}));
  EXPECT_FALSE(parse({"--console", "tcp:1"}));
  EXPECT_FALSE(parse({"--frobnicate"}));
  auto h = parse({"--help"});
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->help);
}

TEST_F(ConfigTest, JsonFileAndCliOverride) {
  auto p = write_json(R"({"boot-source": {"kernel_image_path": ")" + kernel +
                      R"(", "initrd_path": "/i.cpio", "boot_args": "quiet"},
      "machine-config": {"vcpu_count": 2, "mem_size_mib": 256},
      "console": {"type": "file", "path": "/tmp/c"}, "virtio-console": "file:/tmp/v",
      "virtio-blk": [{"path": "/d.img"}]})");
  auto c = parse({"--config", p});
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->kernel, kernel);
  EXPECT_EQ(c->initrd, "/i.cpio");
  EXPECT_EQ(c->cmdline, "quiet");
  EXPECT_EQ(c->vcpus, 2u);
  EXPECT_EQ(c->mem_bytes, 256ULL << 20);
  EXPECT_EQ(c->console.path, "/tmp/c");
  ASSERT_TRUE(c->virtio_console);
  EXPECT_EQ(c->virtio_console->path, "/tmp/v");
  ASSERT_EQ(c->virtio_blk.size(), 1u);
  // Flags win, wherever --config appears.
  auto o = parse({"--cpus", "1", "--config", p, "--mem", "128M"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->vcpus, 1u);
  EXPECT_EQ(o->mem_bytes, 128ULL << 20);
  EXPECT_EQ(o->initrd, "/i.cpio");
}

TEST_F(ConfigTest, BadJsonIsAnErrorNotACrash) {
  for (const char* text : {"{", "[]", R"({"machine-config": {"vcpu_count": "two"}})", R"({"bogus": 1})",
                           R"({"boot-source": 3})", R"({"machine-config": {"mem_size_mib": -1}})",
                           R"({"console": 5})", R"({"virtio-blk": [7]})"}) {
    VmConfig c;
    EXPECT_FALSE(apply_json(text, c)) << text;
  }
  EXPECT_FALSE(parse({"--config", dir + "/missing.json"}));
  EXPECT_FALSE(parse({"--config"}));
}

TEST_F(ConfigTest, Validation) {
  VmConfig c;
  EXPECT_FALSE(validate(c, 0));  // no kernel
  c.kernel = kernel;
  EXPECT_TRUE(validate(c, 0));
  c.vcpus = 0;
  EXPECT_NE(validate(c, 0).error().what().find("at least 1"), std::string::npos);
  c.vcpus = 8;
  EXPECT_NE(validate(c, 4).error().what().find("KVM's maximum"), std::string::npos);
  EXPECT_TRUE(validate(c, 8));
  c.vcpus = 300;
  EXPECT_FALSE(validate(c, 0));
  c.vcpus = 1;
  c.mem_bytes = 16 << 20;
  EXPECT_NE(validate(c, 0).error().what().find("too small"), std::string::npos);
  c.mem_bytes = 512 << 20;
  c.initrd = dir + "/nope.cpio";
  EXPECT_NE(validate(c, 0).error().what().find("nope.cpio"), std::string::npos);
  c.initrd = dir;  // a directory
  EXPECT_FALSE(validate(c, 0));
  c.initrd.clear();
  c.kernel = dir + "/missing";
  EXPECT_FALSE(validate(c, 0));
}

TEST(KernelCmdline, AddsPlatformDefaultsUnlessGiven) {
  VmConfig c;
  c.cmdline = "quiet";
  EXPECT_EQ(kernel_cmdline(c), "quiet console=ttyS0 panic=-1 reboot=acpi 8250.nr_uarts=1");
  c.cmdline = "console=hvc0 panic=5 reboot=t";
  EXPECT_EQ(kernel_cmdline(c), "console=hvc0 panic=5 reboot=t 8250.nr_uarts=1");
  c.cmdline = "";
  EXPECT_EQ(kernel_cmdline(c).rfind("console=ttyS0", 0), 0u);
  c.cmdline = "xconsole=foo";  // not the console= parameter
  EXPECT_NE(kernel_cmdline(c).find(" console=ttyS0"), std::string::npos);
}

TEST(Usage, DocumentsExitCodes) {
  auto u = usage();
  EXPECT_NE(u.find("guest powered off"), std::string::npos);
  EXPECT_NE(u.find("triple fault"), std::string::npos);
  EXPECT_NE(u.find("panic"), std::string::npos);
  EXPECT_EQ(exit_code(StopReason::PowerOff), 0);
  EXPECT_EQ(exit_code(StopReason::Error), 1);
  EXPECT_EQ(exit_code(StopReason::Reboot), 2);
  EXPECT_EQ(exit_code(StopReason::TripleFault), 3);
  EXPECT_EQ(exit_code(StopReason::Panic), 4);
  EXPECT_EQ(exit_code(StopReason::HostRequest), 5);
}

TEST(KvmFlavour, FromSysModule) {
  char tmpl[] = "/tmp/gears-vmm-sysmod-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string d = tmpl;
  EXPECT_EQ(detect_kvm_flavour(d), KvmFlavour::Unknown);
  ::mkdir((d + "/kvm_amd").c_str(), 0755);
  EXPECT_EQ(detect_kvm_flavour(d), KvmFlavour::Hardware);
  ::mkdir((d + "/kvm_pvm").c_str(), 0755);
  EXPECT_EQ(detect_kvm_flavour(d), KvmFlavour::Pvm);
  ::rmdir((d + "/kvm_amd").c_str());
  ::rmdir((d + "/kvm_pvm").c_str());
  ::rmdir(d.c_str());
}

TEST(KvmSystem, MissingDeviceIsAOneLineError) {
  auto k = KvmSystem::open("/nonexistent/kvm", false);
  ASSERT_FALSE(k);
  EXPECT_NE(k.error().what().find("/nonexistent/kvm"), std::string::npos);
  EXPECT_EQ(k.error().what().find('\n'), std::string::npos);
}

}  // namespace
}  // namespace gears::vmm::config

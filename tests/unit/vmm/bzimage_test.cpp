// bzImage header parsing: a synthetic valid image, and the ways a file can be wrong.
#include "x86/bzimage.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace gears::vmm::x86 {
namespace {

template <class T>
void put(std::vector<uint8_t>& f, size_t off, T v) {
  std::memcpy(f.data() + off, &v, sizeof v);
}

// A minimal image: 4 setup sectors + boot sector, then `kernel_bytes` of "kernel".
std::vector<uint8_t> make_image(size_t kernel_bytes = 4096, uint16_t version = 0x020f) {
  std::vector<uint8_t> f(5 * 512 + kernel_bytes, 0x90);
  f[0x1f1] = 4;                                  // setup_sects
  put<uint32_t>(f, 0x1f4, static_cast<uint32_t>(kernel_bytes / 16));  // syssize
  put<uint16_t>(f, 0x1fe, 0xAA55);
  f[0x201] = 0x66;                               // jump: header ends at 0x268
  std::memcpy(f.data() + 0x202, "HdrS", 4);
  put<uint16_t>(f, 0x206, version);
  f[0x211] = 0x01;                               // LOADED_HIGH
  put<uint32_t>(f, 0x22c, 0x7fffffff);           // initrd_addr_max
  put<uint32_t>(f, 0x230, 0x200000);
  put<uint16_t>(f, 0x236, 0x0001);               // XLF_KERNEL_64
  put<uint32_t>(f, 0x238, 2047);                 // cmdline_size
  put<uint64_t>(f, 0x258, 0x1000000);
  put<uint32_t>(f, 0x260, 0x100000);             // init_size
  return f;
}

TEST(BzImage, ParsesValidHeader) {
  auto f = make_image();
  auto k = parse_bzimage(f);
  ASSERT_TRUE(k) << k.error().what();
  EXPECT_EQ(k->version, 0x020f);
  EXPECT_EQ(k->setup_sects, 4);
  EXPECT_EQ(k->kernel.size(), 4096u);
  EXPECT_EQ(k->init_size, 0x100000u);
  EXPECT_EQ(k->cmdline_size, 2047u);
  EXPECT_EQ(k->initrd_addr_max, 0x7fffffffu);
  EXPECT_EQ(k->setup_header.size(), 0x268u - 0x1f1u);
  EXPECT_EQ(k->setup_header[0x202 - 0x1f1], 'H');
}

TEST(BzImage, ZeroSetupSectsMeansFour) {
  auto f = make_image();
  f[0x1f1] = 0;
  auto k = parse_bzimage(f);
  ASSERT_TRUE(k);
  EXPECT_EQ(k->setup_sects, 4);
}

TEST(BzImage, RejectsTooSmall) {
  std::vector<uint8_t> f(100, 0);
  auto k = parse_bzimage(f);
  ASSERT_FALSE(k);
  EXPECT_NE(k.error().what().find("too small"), std::string::npos);
}

TEST(BzImage, RejectsMissingMagic) {
  auto f = make_image();
  f[0x202] = 'X';
  EXPECT_FALSE(parse_bzimage(f));
  auto g = make_image();
  put<uint16_t>(g, 0x1fe, 0);
  EXPECT_FALSE(parse_bzimage(g));
}

TEST(BzImage, RejectsRandomBytes) {
  std::vector<uint8_t> f(64 * 1024);
  uint32_t x = 12345;
  for (auto& b : f) {
    x = x * 1103515245 + 12345;
    b = static_cast<uint8_t>(x >> 16);
  }
  EXPECT_FALSE(parse_bzimage(f));
}

TEST(BzImage, RejectsOldProtocol) {
  auto f = make_image(4096, 0x020a);
  auto k = parse_bzimage(f);
  ASSERT_FALSE(k);
  EXPECT_NE(k.error().what().find("2.10"), std::string::npos);
}

TEST(BzImage, RejectsNo64BitEntry) {
  auto f = make_image();
  put<uint16_t>(f, 0x236, 0);
  auto k = parse_bzimage(f);
  ASSERT_FALSE(k);
  EXPECT_NE(k.error().what().find("XLF_KERNEL_64"), std::string::npos);
}

TEST(BzImage, RejectsTruncatedKernel) {
  auto f = make_image(8192);
  f.resize(f.size() - 4096);
  auto k = parse_bzimage(f);
  ASSERT_FALSE(k);
  EXPECT_NE(k.error().what().find("truncated"), std::string::npos);
}

TEST(BzImage, RejectsSetupCoveringFile) {
  auto f = make_image();
  f[0x1f1] = 200;
  EXPECT_FALSE(parse_bzimage(f));
}

TEST(BzImage, RejectsInitSizeBelowKernel) {
  auto f = make_image();
  put<uint32_t>(f, 0x260, 16);
  EXPECT_FALSE(parse_bzimage(f));
}

TEST(BzImage, MissingFileIsAnError) {
  auto k = load_bzimage("/nonexistent/vmlinuz");
  ASSERT_FALSE(k);
  EXPECT_NE(k.error().what().find("/nonexistent/vmlinuz"), std::string::npos);
}

}  // namespace
}  // namespace gears::vmm::x86

// The bundle reader treats its input as untrusted: every corruption is an error value.
#include "gears/bundle.h"

#include <gtest/gtest.h>

#include <cstring>

namespace gears::bundle {
namespace {

std::vector<std::uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

std::vector<Entry> sample() {
  return {{GEARS_BUNDLE_MANIFEST, "manifest.json", bytes("{\"schema\":1}")},
          {GEARS_BUNDLE_VMM_HALF, "svc.vmm.so", bytes("vmm-half")},
          {GEARS_BUNDLE_USER_HALF, "svc.user.so", bytes("user")},
          {GEARS_BUNDLE_KERNEL_HALF, "svc.ko", {}}};
}

std::vector<std::uint8_t> image() {
  auto img = write(sample());
  EXPECT_TRUE(img.has_value());
  return *img;
}

gears_bundle_entry* toc(std::vector<std::uint8_t>& img, unsigned i) {
  return reinterpret_cast<gears_bundle_entry*>(img.data() + sizeof(gears_bundle_header) +
                                               i * sizeof(gears_bundle_entry));
}

TEST(Bundle, RoundTrip) {
  auto img = image();
  EXPECT_EQ(img.size() % 8, 0u);
  auto entries = read(img);
  ASSERT_TRUE(entries.has_value()) << entries.error().what();
  ASSERT_EQ(entries->size(), 4u);
  EXPECT_EQ((*entries)[1].name, "svc.vmm.so");
  EXPECT_EQ((*entries)[1].data, bytes("vmm-half"));
  EXPECT_TRUE((*entries)[3].data.empty());
  ASSERT_NE(find(*entries, GEARS_BUNDLE_USER_HALF), nullptr);
  EXPECT_EQ(find(*entries, GEARS_BUNDLE_USER_HALF)->data, bytes("user"));
}

TEST(Bundle, Crc32MatchesZlib) {
  EXPECT_EQ(crc32(bytes("123456789")), 0xCBF43926u);
  EXPECT_EQ(crc32({}), 0u);
}

TEST(Bundle, WriterRefusesBadEntries) {
  auto entries = sample();
  entries.push_back({GEARS_BUNDLE_MANIFEST, "second.json", {}});
  EXPECT_FALSE(write(entries).has_value());
  entries = sample();
  entries[1].name = std::string(GEARS_BUNDLE_NAME_LEN, 'x');
  EXPECT_FALSE(write(entries).has_value());
  EXPECT_FALSE(write({}).has_value());
}

TEST(Bundle, RejectsTruncation) {
  auto img = image();
  for (std::size_t n : {std::size_t{0}, std::size_t{7}, sizeof(gears_bundle_header),
                        sizeof(gears_bundle_header) + 10, img.size() - 1}) {
    std::vector<std::uint8_t> cut(img.begin(), img.begin() + static_cast<long>(n));
    EXPECT_FALSE(read(cut).has_value()) << "length " << n;
  }
}

TEST(Bundle, RejectsBadHeader) {
  auto img = image();
  img[0] = 'X';
  EXPECT_NE(read(img).error().message.find("magic"), std::string::npos);

  img = image();
  reinterpret_cast<gears_bundle_header*>(img.data())->version = 99;
  EXPECT_FALSE(read(img).has_value());

  img = image();
  reinterpret_cast<gears_bundle_header*>(img.data())->entry_count = 0;
  EXPECT_FALSE(read(img).has_value());

  img = image();
  reinterpret_cast<gears_bundle_header*>(img.data())->entry_count = 0xFFFFFFFFu;
  EXPECT_FALSE(read(img).has_value());

  img = image();
  img.push_back(0);  // size no longer matches the header
  EXPECT_FALSE(read(img).has_value());
}

TEST(Bundle, RejectsBlobsOutsideTheFile) {
  auto img = image();
  toc(img, 1)->offset = img.size();
  toc(img, 1)->size = 1;
  EXPECT_FALSE(read(img).has_value());

  img = image();
  toc(img, 1)->size = ~std::uint64_t{0};  // offset + size overflows
  EXPECT_FALSE(read(img).has_value());

  img = image();
  toc(img, 1)->offset = 0;  // overlaps the header
  EXPECT_FALSE(read(img).has_value());
}

TEST(Bundle, RejectsCorruptContentAndNames) {
  auto img = image();
  img[toc(img, 1)->offset] ^= 0xFF;
  EXPECT_NE(read(img).error().message.find("checksum"), std::string::npos);

  img = image();
  std::memset(toc(img, 2)->name, 'a', GEARS_BUNDLE_NAME_LEN);
  EXPECT_FALSE(read(img).has_value());

  img = image();
  toc(img, 2)->kind = 77;
  EXPECT_FALSE(read(img).has_value());

  img = image();
  toc(img, 0)->kind = GEARS_BUNDLE_VMM_HALF;  // no manifest left
  EXPECT_FALSE(read(img).has_value());
}

TEST(Bundle, SurvivesEveryByteFlip) {
  const auto img = image();
  for (std::size_t i = 0; i < img.size(); ++i) {
    auto bad = img;
    bad[i] ^= 0x5A;
    (void)read(bad);  // must not crash; most flips are errors
  }
}

}  // namespace
}  // namespace gears::bundle

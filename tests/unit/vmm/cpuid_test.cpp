// CPUID fix-ups on a synthetic KVM_GET_SUPPORTED_CPUID list.
#include "x86/cpuid.h"

#include <gtest/gtest.h>

#include <cstring>

namespace gears::vmm::x86 {
namespace {

kvm_cpuid_entry2 leaf(uint32_t fn, uint32_t index = 0) {
  kvm_cpuid_entry2 e{};
  e.function = fn;
  e.index = index;
  return e;
}

const kvm_cpuid_entry2* find(const std::vector<kvm_cpuid_entry2>& v, uint32_t fn, uint32_t index = 0) {
  for (const auto& e : v)
    if (e.function == fn && e.index == index) return &e;
  return nullptr;
}

std::vector<kvm_cpuid_entry2> supported() {
  auto l1 = leaf(1);
  l1.ebx = 0x00000800;  // CLFLUSH size in bits 15:8
  auto kvm = leaf(0x40000000);
  kvm.eax = 0x40000001;
  return {leaf(0), l1, leaf(0xb, 0), leaf(0xb, 1), leaf(0x80000008), leaf(0x8000001e), kvm};
}

TEST(Cpuid, Leaf1HypervisorTscDeadlineApicId) {
  auto v = cpuid_for_vcpu(supported(), 3, 4);
  const auto* l1 = find(v, 1);
  ASSERT_NE(l1, nullptr);
  EXPECT_TRUE(l1->ecx & (1u << 31));
  EXPECT_TRUE(l1->ecx & (1u << 24));
  EXPECT_EQ(l1->ebx >> 24, 3u);
  EXPECT_EQ((l1->ebx >> 16) & 0xff, 4u);
  EXPECT_EQ(l1->ebx & 0xffff, 0x0800u);  // untouched low half
  EXPECT_TRUE(l1->edx & (1u << 28));
}

TEST(Cpuid, TopologyLeaves) {
  auto v = cpuid_for_vcpu(supported(), 1, 2);
  const auto* b0 = find(v, 0xb, 0);
  const auto* b1 = find(v, 0xb, 1);
  ASSERT_TRUE(b0 && b1);
  EXPECT_EQ(b0->edx, 1u);
  EXPECT_EQ(b1->ebx, 2u);
  EXPECT_EQ(b1->eax, 1u);
  EXPECT_EQ(find(v, 0x80000008)->ecx & 0xff, 1u);
  const auto* e = find(v, 0x8000001e);
  EXPECT_EQ(e->eax, 1u);
  EXPECT_EQ(e->ebx & 0xff, 1u);
}

TEST(Cpuid, SingleVcpuHasNoHtt) {
  auto v = cpuid_for_vcpu(supported(), 0, 1);
  EXPECT_FALSE(find(v, 1)->edx & (1u << 28));
  EXPECT_EQ(find(v, 0x80000008)->ecx & 0xff, 0u);
}

TEST(Cpuid, AddsKvmSignatureWhenMissing) {
  auto s = supported();
  s.pop_back();
  auto v = cpuid_for_vcpu(s, 0, 1);
  const auto* k = find(v, 0x40000000);
  ASSERT_NE(k, nullptr);
  char sig[13] = {};
  std::memcpy(sig, &k->ebx, 4);
  std::memcpy(sig + 4, &k->ecx, 4);
  std::memcpy(sig + 8, &k->edx, 4);
  EXPECT_STREQ(sig, "KVMKVMKVM");
}

}  // namespace
}  // namespace gears::vmm::x86

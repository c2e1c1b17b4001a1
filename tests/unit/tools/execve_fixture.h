// Test helper: a fake guest address space with one execve call in it (filename, argv, envp in a
// data page; two pages of user stack filled with 0xAA), for the execve tool's tests.
#pragma once

#include <gtest/gtest.h>

#include <cstring>

#include "page_table_builder.h"
#include "tools/execve/exec_arrays.h"

namespace gears::vmm::execve::test {

using introspect::testing::PageTableBuilder;
constexpr uint64_t kData = 0x0000'0000'0040'0000ULL;   // filename, argv, envp
constexpr uint64_t kStack = 0x0000'7fff'f000'0000ULL;  // 2 pages of user stack: [kStack, kStack+0x2000)

class ExecveFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    mem = std::move(*GuestMemory::create(8 << 20));
    PageTableBuilder pt(mem, 0x10000, 0x11000);
    const uint64_t rw = PageTableBuilder::kRw | PageTableBuilder::kUser;
    pt.map(kData, 0x200000, 0x1000, rw);
    pt.map(kStack, 0x300000, 0x1000, rw);
    pt.map(kStack + 0x1000, 0x301000, 0x1000, rw);
    cr3 = pt.cr3();
    // "/bin/ls" at +0, argv {"ls","-l"}, envp {"PATH=/bin","LD_PRELOAD=/old.so","HOME=/"}.
    put(0x000, "/bin/ls");
    put(0x010, "ls");
    put(0x018, "-l");
    put(0x020, "PATH=/bin");
    put(0x030, "LD_PRELOAD=/old.so");
    put(0x050, "HOME=/");
    uint64_t argv[] = {kData + 0x10, kData + 0x18, 0};
    uint64_t envp[] = {kData + 0x20, kData + 0x30, kData + 0x50, 0};
    ASSERT_TRUE(mem.write(0x200100, std::span(reinterpret_cast<const uint8_t*>(argv), sizeof argv)));
    ASSERT_TRUE(mem.write(0x200200, std::span(reinterpret_cast<const uint8_t*>(envp), sizeof envp)));
    regs.rax = 59;
    regs.rdi = kData, regs.rsi = kData + 0x100, regs.rdx = kData + 0x200;
    regs.rsp = kStack + 0x1F00;
    ASSERT_TRUE(mem.fill(0x300000, 0xAA, 0x2000));
  }
  void put(uint64_t off, const char* s) {
    ASSERT_TRUE(mem.write(0x200000 + off, std::span(reinterpret_cast<const uint8_t*>(s), std::strlen(s) + 1)));
  }
  // The 128 bytes below RSP still hold the fill pattern.
  void expect_red_zone_untouched(const introspect::AddressSpace& as) const {
    for (uint64_t a = regs.rsp - kRedZone; a < regs.rsp; ++a) EXPECT_EQ(*as.read_obj<uint8_t>(a), 0xAA) << a;
  }
  GuestMemory mem;
  uint64_t cr3 = 0;
  VcpuRegs regs;
};

}  // namespace gears::vmm::execve::test

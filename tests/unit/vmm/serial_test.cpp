// The 16550 register model: output, THRE and RX interrupts, IIR acknowledgement, loopback,
// and the power device's decoding of ACPI sleep/reset writes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/run_control.h"
#include "devices/acpi_power.h"
#include "devices/console.h"
#include "devices/serial_16550.h"
#include "x86/layout.h"

namespace gears::vmm::devices {
namespace {

class FakeIrq : public IrqLine {
 public:
  void set_level(bool high) override {
    if (high && !level) ++edges;
    level = high;
  }
  bool level = false;
  int edges = 0;
};

class SerialTest : public ::testing::Test {
 protected:
  std::shared_ptr<FakeIrq> irq = std::make_shared<FakeIrq>();
  std::string out;
  Serial16550 uart{irq, [this](uint8_t c) { out.push_back(static_cast<char>(c)); }};

  uint8_t rd(uint8_t reg) {
    uint8_t v = 0;
    uart.read(reg, std::span<uint8_t>(&v, 1));
    return v;
  }
  void wr(uint8_t reg, uint8_t v) { uart.write(reg, std::span<const uint8_t>(&v, 1)); }
};

TEST_F(SerialTest, PolledOutputWithInterruptsOff) {
  EXPECT_TRUE(rd(Serial16550::kLsr) & Serial16550::kLsrThre);
  for (char c : std::string("hi\n")) wr(Serial16550::kRbrThr, static_cast<uint8_t>(c));
  EXPECT_EQ(out, "hi\n");
  EXPECT_FALSE(irq->level);
  EXPECT_EQ(rd(Serial16550::kIirFcr) & 0x0f, Serial16550::kIirNoInt);
}

TEST_F(SerialTest, EnablingThriRaisesThreAndIirReadAcksIt) {
  wr(Serial16550::kIer, Serial16550::kIerThri);
  EXPECT_TRUE(irq->level);
  EXPECT_EQ(rd(Serial16550::kIirFcr) & 0x0f, Serial16550::kIirThri);
  EXPECT_FALSE(irq->level);
  EXPECT_EQ(rd(Serial16550::kIirFcr) & 0x0f, Serial16550::kIirNoInt);
  // Each byte written re-arms THRE with a fresh edge (the IOAPIC pin is edge-triggered).
  int before = irq->edges;
  wr(Serial16550::kRbrThr, 'a');
  wr(Serial16550::kRbrThr, 'b');
  EXPECT_EQ(irq->edges, before + 2);
  EXPECT_EQ(out, "ab");
  wr(Serial16550::kIer, 0);
  EXPECT_FALSE(irq->level);
}

TEST_F(SerialTest, LinuxThreTestSeesReassertion) {
  // serial8250_do_startup: IER=THRI, read IIR, IER=0, IER=THRI, read IIR: both must show THRI.
  wr(Serial16550::kIer, Serial16550::kIerThri);
  uint8_t iir1 = rd(Serial16550::kIirFcr);
  wr(Serial16550::kIer, 0);
  wr(Serial16550::kIer, Serial16550::kIerThri);
  uint8_t iir2 = rd(Serial16550::kIirFcr);
  EXPECT_FALSE(iir1 & Serial16550::kIirNoInt);
  EXPECT_FALSE(iir2 & Serial16550::kIirNoInt);
}

TEST_F(SerialTest, InputWaitsUntilGuestEnablesRxInterrupts) {
  const uint8_t in[] = {'x', 'y'};
  uart.push_input(in);
  EXPECT_FALSE(rd(Serial16550::kLsr) & Serial16550::kLsrDr);
  EXPECT_FALSE(irq->level);
  wr(Serial16550::kIer, Serial16550::kIerRdi);
  EXPECT_TRUE(irq->level);
  EXPECT_TRUE(rd(Serial16550::kLsr) & Serial16550::kLsrDr);
  EXPECT_EQ(rd(Serial16550::kIirFcr) & 0x0f, Serial16550::kIirRdi);
  EXPECT_EQ(rd(Serial16550::kRbrThr), 'x');
  EXPECT_EQ(rd(Serial16550::kRbrThr), 'y');
  EXPECT_FALSE(rd(Serial16550::kLsr) & Serial16550::kLsrDr);
  EXPECT_FALSE(irq->level);
}

TEST_F(SerialTest, ProbeReadsDoNotEatTypedAheadInput) {
  const uint8_t in[] = {'z'};
  uart.push_input(in);
  wr(Serial16550::kIer, 0x0f);  // the 8250 existence test...
  wr(Serial16550::kIer, 0);     // ...restores IER
  EXPECT_EQ(rd(Serial16550::kRbrThr), 0);  // "clear for luck" read while IER is 0
  wr(Serial16550::kIirFcr, 0x07);          // FIFO enable + clear RX/TX, as on every open
  wr(Serial16550::kIer, Serial16550::kIerRdi);
  EXPECT_EQ(rd(Serial16550::kRbrThr), 'z');
}

TEST_F(SerialTest, DivisorLatchAndScratch) {
  wr(Serial16550::kLcr, Serial16550::kLcrDlab);
  wr(Serial16550::kRbrThr, 0x01);
  wr(Serial16550::kIer, 0x00);
  EXPECT_EQ(rd(Serial16550::kRbrThr), 0x01);
  wr(Serial16550::kLcr, 0x03);
  EXPECT_TRUE(out.empty());  // divisor writes are not output
  wr(Serial16550::kScr, 0x5a);
  EXPECT_EQ(rd(Serial16550::kScr), 0x5a);
}

TEST_F(SerialTest, FifoEnabledShowsIn16550AIir) {
  wr(Serial16550::kIirFcr, Serial16550::kFcrEnable);
  EXPECT_EQ(rd(Serial16550::kIirFcr) >> 6, 3);
}

TEST_F(SerialTest, LoopbackEchoesAndMirrorsModemLines) {
  wr(Serial16550::kMcr, Serial16550::kMcrLoop | 0x0a);  // loop + RTS + OUT2
  EXPECT_EQ(rd(Serial16550::kMsr) & 0xf0, 0x90);        // CTS + DCD
  wr(Serial16550::kIer, Serial16550::kIerRdi);
  wr(Serial16550::kRbrThr, 'q');
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(rd(Serial16550::kRbrThr), 'q');
}

TEST_F(SerialTest, OutOfRangeAccessesAreHarmless) {
  uint8_t buf[4] = {1, 2, 3, 4};
  uart.read(100, buf);
  uart.write(100, buf);
  uart.read(0, std::span<uint8_t>());
  EXPECT_TRUE(out.empty());
}

TEST(PanicWatch, FindsThePanicLine) {
  PanicWatch w;
  int hits = 0;
  for (char c : std::string("[ 1.0] Kernel Kernel panic - not syncing: VFS\n")) hits += w.feed(static_cast<uint8_t>(c));
  EXPECT_EQ(hits, 1);
  for (char c : std::string("Kernel panic - not sync")) hits += w.feed(static_cast<uint8_t>(c));
  EXPECT_EQ(hits, 1);
}

TEST(AcpiPower, S5WritePowersOff) {
  RunControl rc;
  AcpiPower p(rc);
  uint8_t v = static_cast<uint8_t>((x86::kAcpiS5Type << 2) | 0x20);
  p.write(0, std::span<const uint8_t>(&v, 1));
  EXPECT_EQ(rc.reason(), StopReason::PowerOff);
}

TEST(AcpiPower, SleepWithoutEnableIsIgnored) {
  RunControl rc;
  AcpiPower p(rc);
  uint8_t v = x86::kAcpiS5Type << 2;
  p.write(0, std::span<const uint8_t>(&v, 1));
  EXPECT_EQ(rc.reason(), StopReason::Running);
}

TEST(AcpiPower, ResetAfterPanicIsAPanic) {
  RunControl rc;
  AcpiPower p(rc);
  rc.note_panic();
  uint8_t v = x86::kAcpiResetValue;
  p.write(x86::kAcpiResetPort - x86::kAcpiSleepControlPort, std::span<const uint8_t>(&v, 1));
  EXPECT_EQ(rc.reason(), StopReason::Panic);
}

TEST(AcpiPower, PlainReset) {
  RunControl rc;
  AcpiPower p(rc);
  uint8_t v = x86::kAcpiResetValue;
  p.write(x86::kAcpiResetPort - x86::kAcpiSleepControlPort, std::span<const uint8_t>(&v, 1));
  EXPECT_EQ(rc.reason(), StopReason::Reboot);
}

}  // namespace
}  // namespace gears::vmm::devices

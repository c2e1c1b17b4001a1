// Fuzz target: the overlay accelerator's VMM side of the shared area (samples/overlay_accel/
// ovl_vmm.h), the guest being the input. The area is attached, then the input rewrites any bytes
// of it (ring indices, slot lengths, packets, the sleep flag) between the VMM's rounds: poll,
// kick, a frame for the RX ring (rx_tap), rx_stop, detach and attach again. Properties: no crash
// (ASan/UBSan); every encapsulated packet the NIC is handed lies within one slot's data, every
// frame within the largest entry.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "fuzz_input.h"
#include "ovl_vmm.h"

namespace {

// A NIC that checks what reaches the host path and drops it.
class Nic final : public gears::vmm::OverlayNic {
 public:
  gears::vmm::OverlayNicInfo info() const override { return {"net0", {0x52, 0x54, 0, 0, 0, 1}, 1, 1500, true}; }
  uint64_t routes_generation() const override { return gen; }
  std::vector<gears::vmm::Mac> remote_macs(size_t max) const override {
    std::vector<gears::vmm::Mac> out(routes < max ? routes : max);
    for (size_t i = 0; i < out.size(); ++i) out[i] = {0x52, 0x54, 0, 0, 9, static_cast<uint8_t>(i)};
    return out;
  }
  gears::vmm::OverlaySend send_encapsulated(std::span<const uint8_t> packet) override {
    if (packet.size() > OVL_SLOT_DATA) std::abort();
    volatile uint8_t sum = 0;
    for (uint8_t b : packet) sum = sum + b;  // every byte readable (ASan)
    return gears::vmm::OverlaySend::dropped;
  }
  gears::vmm::OverlaySend send_frame(std::span<const uint8_t> frame, const gears::vmm::OverlayOffload&) override {
    if (frame.size() > OVL_TX_MAX_FRAME) std::abort();
    volatile uint8_t sum = 0;
    for (uint8_t b : frame) sum = sum + b;
    return gears::vmm::OverlaySend::dropped;
  }
  void flush() override {}
  void set_rx_tap(gears::vmm::OverlayRxTap) override {}
  uint64_t gen = 1;
  size_t routes = 3;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in{data, size};
  std::vector<uint8_t> area(OVL_AREA_SIZE, 0);
  auto* c = reinterpret_cast<ovl_ctrl*>(area.data());
  c->magic = OVL_MAGIC;
  c->area_size = OVL_AREA_SIZE;
  c->tx_slots = OVL_TX_SLOTS;
  c->rx_slots = OVL_RX_SLOTS;
  Nic nic;
  ovl::VmmSide side;
  if (side.attach(area, &nic) != 0) std::abort();
  std::vector<uint8_t> frame(2048);
  for (int step = 0; step < 96 && in.n > 0; ++step) {
    switch (in.take<uint8_t>() % 8) {
      case 0:
      case 1: {  // the guest writes: mostly the control page and ring indices, or any slot
        const bool hot = in.take<uint8_t>() & 1;
        const uint32_t at = hot ? in.take<uint16_t>() % (OVL_TX_OFF + 64) : in.take<uint32_t>() % OVL_AREA_SIZE;
        const size_t len = in.take<uint8_t>() % 16 + 1;
        for (size_t i = 0; i < len && at + i < OVL_AREA_SIZE; ++i) area[at + i] = in.take<uint8_t>();
        break;
      }
      case 2:
        (void)side.poll();
        break;
      case 3:
        side.kick();
        break;
      case 4: {  // a frame for the guest arrives
        const size_t len = in.take<uint16_t>() % frame.size();
        for (size_t i = 0; i < len && in.n > 0; ++i) frame[i] = in.take<uint8_t>();
        (void)side.rx_tap(std::span<const uint8_t>(frame.data(), len));
        break;
      }
      case 5:
        (void)side.rx_stop();
        break;
      case 6:  // the control plane changes
        nic.gen++;
        nic.routes = in.take<uint8_t>() % 80;
        break;
      case 7:  // the guest detaches and attaches again (a redeploy), or announces garbage
        side.detach();
        (void)side.attach(area, &nic);
        break;
    }
  }
  side.detach();
  return 0;
}

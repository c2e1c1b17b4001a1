// A guest NIC's switch port as a service's VMM half sees it (gears/vmm/overlay.h): the
// control plane's view (remote MACs, overlay id, MTU) and the host path for packets the
// guest half encapsulated. One view per service; its receive tap goes with it.
#pragma once

#include <memory>
#include <mutex>

#include "gears/vmm/overlay.h"
#include "net/address.h"
#include "net/port.h"
#include "net/switch.h"

namespace gears::vmm::net {

class SwitchNicView final : public gears::vmm::OverlayNic {
 public:
  SwitchNicView(std::shared_ptr<Switch> sw, std::shared_ptr<Port> port, std::string name, const MacAddress& mac);
  ~SwitchNicView() override;

  OverlayNicInfo info() const override;
  std::uint64_t routes_generation() const override { return sw_->generation(); }
  std::vector<Mac> remote_macs(std::size_t max) const override;
  OverlaySend send_encapsulated(std::span<const std::uint8_t> packet) override;
  OverlaySend send_frame(std::span<const std::uint8_t> frame, const OverlayOffload& off) override;
  void flush() override;
  void set_rx_tap(OverlayRxTap tap) override;

 private:
  const std::shared_ptr<Switch> sw_;
  const std::shared_ptr<Port> port_;
  const std::string name_;
  const MacAddress mac_;
  std::mutex mu_;
  bool tapped_ = false;
};

}  // namespace gears::vmm::net

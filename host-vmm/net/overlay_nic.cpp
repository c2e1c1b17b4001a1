#include "net/overlay_nic.h"

namespace gears::vmm::net {

SwitchNicView::SwitchNicView(std::shared_ptr<Switch> sw, std::shared_ptr<Port> port, std::string name,
                             const MacAddress& mac)
    : sw_(std::move(sw)), port_(std::move(port)), name_(std::move(name)), mac_(mac) {}

SwitchNicView::~SwitchNicView() { set_rx_tap({}); }

OverlayNicInfo SwitchNicView::info() const {
  OverlayNicInfo i;
  i.name = name_;
  i.mac = mac_.bytes;
  i.network = sw_->options().network;
  i.mtu = sw_->options().mtu;
  i.has_peers = sw_->backend() != nullptr;
  return i;
}

std::vector<Mac> SwitchNicView::remote_macs(std::size_t max) const {
  std::vector<Mac> out;
  for (const MacAddress& m : sw_->remote_macs(max)) out.push_back(m.bytes);
  return out;
}

namespace {

OverlaySend outcome(Forwarded f) {
  switch (f) {
    case Forwarded::kPeer: return OverlaySend::sent;
    case Forwarded::kOther: return OverlaySend::switched;
    case Forwarded::kDropped: break;
  }
  return OverlaySend::dropped;
}

}  // namespace

OverlaySend SwitchNicView::send_encapsulated(std::span<const std::uint8_t> packet) {
  return outcome(port_->send_encapsulated(packet));
}

OverlaySend SwitchNicView::send_frame(std::span<const std::uint8_t> frame, const OverlayOffload& in) {
  Offload off;  // DATA_VALID is never taken from a guest
  off.needs_csum = in.needs_csum;
  off.csum_start = in.csum_start;
  off.csum_offset = in.csum_offset;
  off.gso = in.gso == OverlayOffload::Gso::tcpv4   ? Gso::kTcpV4
            : in.gso == OverlayOffload::Gso::tcpv6 ? Gso::kTcpV6
                                                   : Gso::kNone;
  off.gso_ecn = in.gso_ecn;
  off.gso_size = in.gso_size;
  off.hdr_len = in.hdr_len;
  return outcome(port_->forward(frame, off));
}

void SwitchNicView::flush() {
  if (Backend* b = sw_->backend()) b->flush();
}

void SwitchNicView::set_rx_tap(OverlayRxTap tap) {
  std::lock_guard lk(mu_);
  if (!tap && !tapped_) return;  // never clear a tap another view set
  tapped_ = static_cast<bool>(tap);
  port_->set_tap(std::move(tap));
}

}  // namespace gears::vmm::net

// A Port is where a frame source/sink attaches to the overlay switch: a virtio-net device (one
// per guest NIC), later a tap device or a test harness. It is the only thing a device sees of
// the network.
//
//   device --send(frame)--> switch          (guest transmit)
//   switch --receiver(frame)--> device      (guest receive)
//
// Frames are whole Ethernet frames (destination MAC first), without virtio headers or FCS,
// each with its offload state (net/offload.h: a partial checksum, a TCP segment larger than the
// MTU). A receiver resolves what it cannot take itself (net/gso.h `resolve`); the switch does
// it for peer hosts.
// Threading: send() may be called from any thread (vCPUs); the receiver is called from switch
// threads (another VM's vCPU, the backend's receive thread) and must not block for long.
// A receiver must not call send() on the same port from inside the callback.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "net/offload.h"

namespace gears::vmm::net {

using FrameReceiver = std::function<void(std::span<const uint8_t> frame, const Offload& off)>;
// Offered each plain frame (no offload state) for the device before its receiver; true: taken
// (the receiver does not see it). A guest-side accelerator's receive ring (doc/overlay-accel.md).
using FrameTap = std::function<bool(std::span<const uint8_t> frame)>;

// What the switch did with a frame from a port.
enum class Forwarded {
  kDropped,  // invalid (counted)
  kPeer,     // to exactly one peer host, and nowhere else
  kOther,    // local ports, a flood, or nowhere (hairpin, no backend; counted)
};

class Port {
 public:
  virtual ~Port() = default;
  virtual std::string_view name() const = 0;
  // A frame from the attached device into the network. The switch validates it (length,
  // source address, offload fields against the frame) and counts what it drops; the caller
  // keeps ownership of the bytes.
  virtual void send(std::span<const uint8_t> frame, const Offload& off) = 0;
  void send(std::span<const uint8_t> frame) { send(frame, Offload{}); }
  // Where frames for the attached device go; an empty function detaches. Once set_receiver()
  // returns, the previous receiver is not running and will not be called again, so a device
  // can detach in its destructor and then die safely.
  virtual void set_receiver(FrameReceiver receiver) = 0;
  // An overlay packet (gears_overlay_hdr + frame) the attached guest encapsulated itself:
  // checked like a packet from a peer, then forwarded like send(frame), except that a peer
  // gets the packet as it is. Ports without a switch behind them drop it.
  virtual Forwarded send_encapsulated(std::span<const uint8_t> packet) {
    (void)packet;
    return Forwarded::kDropped;
  }
  // As send(), and says where the frame went (a service's guest half handing frames over:
  // gears/vmm/overlay.h). Ports without a switch behind them drop it.
  virtual Forwarded forward(std::span<const uint8_t> frame, const Offload& off) {
    (void)frame, (void)off;
    return Forwarded::kDropped;
  }
  // Frames for the device go to `tap` first (empty: none). Once set_tap() returns, the previous
  // tap is not running and will not be called again.
  virtual void set_tap(FrameTap tap) { (void)tap; }
};

}  // namespace gears::vmm::net

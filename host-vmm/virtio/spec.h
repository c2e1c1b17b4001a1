// Constants from the virtio 1.x specification (OASIS virtio v1.1/1.2) that gears-vmm uses.
// Kept in one header so devices and the transport spell them the same way; names follow the
// spec (and Linux's uapi headers) so they can be grepped for in either.
#pragma once

#include <cstdint>

namespace gears::vmm::virtio {

// Device status bits (spec 2.1).
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 0x40;
inline constexpr uint32_t kStatusFailed = 0x80;

// Reserved (transport/ring) feature bits (spec 6).
inline constexpr unsigned kFIndirectDesc = 28;  // VIRTIO_F_INDIRECT_DESC
inline constexpr unsigned kFEventIdx = 29;      // VIRTIO_F_EVENT_IDX
inline constexpr unsigned kFVersion1 = 32;      // VIRTIO_F_VERSION_1

constexpr uint64_t feature_bit(unsigned bit) { return 1ULL << bit; }

// Split-virtqueue descriptor flags (spec 2.7.5).
inline constexpr uint16_t kDescFNext = 1;
inline constexpr uint16_t kDescFWrite = 2;
inline constexpr uint16_t kDescFIndirect = 4;

// Ring flags.
inline constexpr uint16_t kAvailFNoInterrupt = 1;  // VIRTQ_AVAIL_F_NO_INTERRUPT
inline constexpr uint16_t kUsedFNoNotify = 1;      // VIRTQ_USED_F_NO_NOTIFY

// The largest queue the split layout allows (spec 2.7: Queue Size <= 32768).
inline constexpr uint16_t kMaxQueueSize = 32768;

// Interrupt status bits (virtio-mmio InterruptStatus, spec 4.2.2).
inline constexpr uint32_t kIsrUsedBuffer = 1;
inline constexpr uint32_t kIsrConfigChange = 2;

// Device IDs (spec 5).
inline constexpr uint32_t kDeviceIdNet = 1;
inline constexpr uint32_t kDeviceIdBlock = 2;
inline constexpr uint32_t kDeviceIdConsole = 3;

}  // namespace gears::vmm::virtio

// A tiny AML (ACPI Machine Language) writer: just the terms gears-vmm's DSDT needs — names,
// integers, strings, packages, buffers, devices, scopes and the two resource descriptors
// (Memory32Fixed, extended Interrupt). Encodings follow ACPI 6.5 chapter 20.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gears::vmm::acpi::aml {

using Bytes = std::vector<uint8_t>;

// PkgLength: the length of a package *including* the PkgLength bytes themselves.
Bytes pkg_length(size_t content_len);
// A NameString of 4-character segments separated by '.', optional leading '\' ("\_SB_.V000").
Bytes name_string(const std::string& path);
Bytes integer(uint64_t v);
Bytes string(const std::string& s);
Bytes name(const std::string& n, const Bytes& value);  // Name(n, value)
Bytes package(const std::vector<Bytes>& elements);
Bytes buffer(const Bytes& data);
Bytes device(const std::string& n, const Bytes& body);
Bytes scope(const std::string& n, const Bytes& body);

// ResourceTemplate(){...} as a Buffer, with the end tag and its checksum byte appended.
Bytes resource_template(const std::vector<Bytes>& descriptors);
Bytes memory32_fixed(uint32_t base, uint32_t len, bool writable = true);
// QWord address space descriptor for a fixed, cacheable, read-write memory range (consumer):
// what a range above 4 GiB needs.
Bytes qword_memory(uint64_t base, uint64_t len);
// I/O port descriptor, 16-bit decode, fixed at `base`.
Bytes io_port(uint16_t base, uint8_t len);
// Extended interrupt descriptor, consumer, exclusive.
Bytes interrupt(uint32_t gsi, bool level_triggered, bool active_low);

Bytes concat(const std::vector<Bytes>& parts);

}  // namespace gears::vmm::acpi::aml

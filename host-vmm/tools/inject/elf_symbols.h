// Finds a dynamic symbol of an ELF object *as mapped in a guest process* (e.g. libc's dlopen),
// through the object's own dynamic section and GNU hash table, read with user access rights.
// Everything read is guest data: every count, offset and chain walk is bounded.
#pragma once

#include <cstdint>
#include <string_view>

#include "gears/expected.h"
#include "tools/introspect/address_space.h"

namespace gears::vmm::inject {

// `base`: where the object's first page (its ELF header) is mapped (from /proc/PID/maps).
// Returns the symbol's run-time address; prefers the default version (not hidden in
// DT_VERSYM) when a name has several.
Expected<uint64_t> resolve_symbol(const introspect::AddressSpace& as, uint64_t base, std::string_view name);

// The GNU hash function (dl_new_hash).
uint32_t gnu_hash(std::string_view name);

}  // namespace gears::vmm::inject

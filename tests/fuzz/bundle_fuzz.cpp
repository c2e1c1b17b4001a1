// Fuzz target: the bundle reader (sdk/src/bundle.cpp), which gears-vmm and gears-pack run on
// files anyone may hand them. Properties: never crashes (ASan/UBSan), and whatever it accepts
// survives a round trip (write(read(x)) reads back as the same entries).
#include <cstdint>
#include <cstdlib>
#include <span>

#include "gears/bundle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto entries = gears::bundle::read(std::span<const uint8_t>(data, size));
  if (!entries) return 0;
  auto image = gears::bundle::write(*entries);
  if (!image) return 0;  // accepted input the writer will not produce (e.g. no manifest): fine
  auto again = gears::bundle::read(*image);
  if (!again || again->size() != entries->size()) std::abort();
  for (size_t i = 0; i < entries->size(); ++i) {
    const auto& a = (*entries)[i];
    const auto& b = (*again)[i];
    if (a.kind != b.kind || a.name != b.name || a.data != b.data) std::abort();
  }
  return 0;
}

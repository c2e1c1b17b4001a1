// --virtio-blk's value: a path, or key=value items (BlkSpec in virtio/blk.h).
#include <string_view>

#include "virtio/blk.h"

namespace gears::vmm::virtio {

Expected<BlkSpec> parse_blk_spec(const std::string& text) {
  BlkSpec spec;
  if (text.find('=') == std::string::npos) {  // a bare path (which may hold commas)
    spec.path = text;
    return spec;
  }
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t end = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (key == "ro" && eq == std::string::npos) {
      spec.options.read_only = true;
    } else if (key == "path" && !value.empty()) {
      spec.path = value;
    } else if (key == "sched" && !value.empty()) {
      auto k = disk::parse_scheduler_kind(value);
      if (!k) return fail("--virtio-blk: " + k.error().message);
      spec.options.scheduler = *k;
    } else if (key == "model") {
      if (value != "hdd") return fail("--virtio-blk: model '" + value + "' is not hdd");
      spec.options.model = disk::DiskModelParams{};
    } else if (key == "window_ms" && !value.empty()) {
      if (value.size() > 4 || value.find_first_not_of("0123456789") != std::string::npos)
        return fail("--virtio-blk: window_ms '" + value + "' is not a number of milliseconds (0..9999)");
      spec.options.scheduler_params.window_ns = std::stoull(value) * 1'000'000ULL;
    } else {
      return fail("--virtio-blk: '" + item + "' is not one of path=FILE, ro, sched=fifo|as|as-anon, model=hdd, window_ms=N");
    }
  }
  if (spec.path.empty()) return fail("--virtio-blk: path=FILE is required");
  if (spec.options.model && !spec.options.scheduler) spec.options.scheduler = disk::SchedulerKind::kFifo;
  return spec;
}

}  // namespace gears::vmm::virtio

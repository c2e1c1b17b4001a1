// The guest-user half's linker: makes its interposers take effect in a process it was
// dlopen()ed into while running, and takes them out again.
//
// LD_PRELOAD puts the user half first in the lookup order of a *new* process, so its exported
// `open` wins. A library dlopen()ed later comes last, so attach() rebinds instead: it walks
// every loaded object (not the user half, the vDSO or ld.so), reads its PT_DYNAMIC and, for each
// R_X86_64_JUMP_SLOT (PLT call) and R_X86_64_GLOB_DAT (GOT load: -fno-plt calls, taken
// addresses) relocation naming an interposed symbol, records (GOT slot, old value) and stores the
// interposer's address. detach() puts every recorded value back where the slot still holds ours.
//
// Header-only (the user half stays one self-contained .so needing only libc + ld-linux), no
// allocation: records live in a fixed table, and running out of room is an error that undoes
// everything done so far. The VMM calls attach/detach once each through the injected entry
// points gearsc emits (gears_user_attach_v1/gears_user_detach_v1); a mutex serialises them.
//
// Not covered: objects dlopen()ed after attach() (they bind to the real definition), and
// function pointers the program copied before attach() (they keep pointing at the original).
#pragma once

#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#ifndef GEARS_USER_LINK_MAX_PATCHES
// One per (object, symbol, relocation kind): a process with 300 objects each calling 10
// interposed symbols through the PLT needs 3000. 24 bytes each, in .bss.
#define GEARS_USER_LINK_MAX_PATCHES 8192
#endif

// Everything here is hidden: each user half has its own linker state (a default-visibility
// inline variable would become one STB_GNU_UNIQUE object shared by every half, and would keep
// the library from being unloaded).
#pragma GCC visibility push(hidden)

namespace gears::user::link {

// One interposed symbol: its name in the other objects' relocations, and where calls go now.
struct Interposer {
  const char* symbol;
  const void* address;
};

// One rebound GOT slot.
struct Patch {
  void** slot;
  void* old_value;
  void* new_value;
};

namespace detail {

// A linker's record of rebound slots: storage it owns, and how much of it is used.
struct Table {
  Patch* patches;
  std::size_t capacity;
  std::size_t& used;
};

inline std::uintptr_t page_size() {
  static const std::uintptr_t size = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  return size;
}

// Stores `value` into a GOT slot, making its page writable for the moment when `prot` (the
// page's protection as the loader left it) is not. Returns 0 or -errno.
inline int write_slot(void** slot, void* value, int prot) {
  if (prot & PROT_WRITE) {
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    return 0;
  }
  void* page = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(slot) & ~(page_size() - 1));
  if (mprotect(page, page_size(), prot | PROT_WRITE) != 0) return -errno;
  __atomic_store_n(slot, value, __ATOMIC_RELEASE);
  // Back to read-only: if this fails the slot is written but the page stays writable, which
  // loses RELRO's protection but not correctness; report it all the same.
  if (mprotect(page, page_size(), prot) != 0) return -errno;
  return 0;
}

// What attach needs to know about one loaded object.
class Object {
 public:
  explicit Object(const dl_phdr_info& info) : info_(info) {}

  ElfW(Addr) base() const { return info_.dlpi_addr; }

  // Whether `address` lies in one of the object's loaded segments.
  bool contains(std::uintptr_t address) const {
    for (int i = 0; i < info_.dlpi_phnum; ++i) {
      const ElfW(Phdr)& ph = info_.dlpi_phdr[i];
      if (ph.p_type != PT_LOAD) continue;
      const std::uintptr_t start = base() + ph.p_vaddr;
      if (address >= start && address - start < ph.p_memsz) return true;
    }
    return false;
  }

  const ElfW(Dyn)* dynamic() const {
    for (int i = 0; i < info_.dlpi_phnum; ++i)
      if (info_.dlpi_phdr[i].p_type == PT_DYNAMIC)
        return reinterpret_cast<const ElfW(Dyn)*>(base() + info_.dlpi_phdr[i].p_vaddr);
    return nullptr;
  }

  // A d_ptr of the dynamic section as an address. glibc relocates these in place for most
  // objects (so they already include l_addr) but not for all (the vDSO, read-only dynamic
  // sections, other loaders): take whichever reading lands inside the object.
  std::uintptr_t pointer(ElfW(Addr) d_ptr) const {
    if (contains(d_ptr)) return d_ptr;
    if (contains(base() + d_ptr)) return base() + d_ptr;
    return 0;
  }

  // The protection the loader left on the page holding `address`: read-only inside
  // PT_GNU_RELRO (glibc protects its page-aligned-down range), else the segment's own flags.
  // -1 when the address is not in a loaded segment.
  int protection(std::uintptr_t address) const {
    const std::uintptr_t mask = ~(page_size() - 1);
    int prot = -1;
    for (int i = 0; i < info_.dlpi_phnum; ++i) {
      const ElfW(Phdr)& ph = info_.dlpi_phdr[i];
      const std::uintptr_t start = base() + ph.p_vaddr;
      if (ph.p_type == PT_GNU_RELRO) {
        const std::uintptr_t lo = start & mask, hi = (start + ph.p_memsz) & mask;
        if (address >= lo && address < hi) return PROT_READ;
      } else if (ph.p_type == PT_LOAD && address >= start && address - start < ph.p_memsz) {
        prot = ((ph.p_flags & PF_R) ? PROT_READ : 0) | ((ph.p_flags & PF_W) ? PROT_WRITE : 0) |
               ((ph.p_flags & PF_X) ? PROT_EXEC : 0);
      }
    }
    return prot;
  }

 private:
  const dl_phdr_info& info_;
};

// One dl_iterate_phdr walk: the interposers, the table, and the first error.
struct Walk {
  const Interposer* interposers;
  std::size_t count;
  Table* table;
  std::uintptr_t self;      // an address inside the user half
  std::uintptr_t vdso;      // AT_SYSINFO_EHDR
  std::uintptr_t ld_so;     // AT_BASE
  int error;
};

inline const Interposer* find(const Walk& walk, const char* name) {
  for (std::size_t i = 0; i < walk.count; ++i)
    if (std::strcmp(walk.interposers[i].symbol, name) == 0) return &walk.interposers[i];
  return nullptr;
}

// Rebinds the JUMP_SLOT/GLOB_DAT relocations in one RELA table of `object`.
inline int rebind(Walk& walk, const Object& object, const ElfW(Rela)* rela, std::size_t bytes,
                  const ElfW(Sym)* symtab, const char* strtab, std::size_t strsz) {
  for (std::size_t i = 0; i < bytes / sizeof(ElfW(Rela)); ++i) {
    const ElfW(Rela)& r = rela[i];
    const auto type = ELF64_R_TYPE(r.r_info);
    if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) continue;
    const auto index = ELF64_R_SYM(r.r_info);
    if (index == 0) continue;
    const ElfW(Word) name = symtab[index].st_name;
    if (name >= strsz) continue;
    const Interposer* interposer = find(walk, strtab + name);
    if (!interposer) continue;

    const std::uintptr_t address = object.base() + r.r_offset;  // r_offset is never relocated
    const int prot = object.protection(address);
    if (prot < 0 || (address % alignof(void*)) != 0) continue;  // not a slot we can trust
    void** slot = reinterpret_cast<void**>(address);
    void* ours = const_cast<void*>(interposer->address);
    void* old = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (old == ours) continue;
    Table& t = *walk.table;
    if (t.used == t.capacity) return -ENOSPC;
    // Record first: a write that fails half way is still undone.
    t.patches[t.used++] = Patch{slot, old, ours};
    if (int rc = write_slot(slot, ours, prot); rc != 0) return rc;
  }
  return 0;
}

inline int rebind_object(Walk& walk, const dl_phdr_info& info) {
  const Object object(info);
  if (object.contains(walk.self)) return 0;                     // the user half itself
  if (walk.vdso && object.contains(walk.vdso)) return 0;        // the vDSO
  if (walk.ld_so && object.base() == walk.ld_so) return 0;      // ld.so (linked at 0)
  const ElfW(Dyn)* dyn = object.dynamic();
  if (!dyn) return 0;  // static

  std::uintptr_t jmprel = 0, rela = 0, symtab = 0, strtab = 0;
  std::size_t pltrelsz = 0, relasz = 0, strsz = 0, relaent = sizeof(ElfW(Rela));
  ElfW(Sxword) pltrel = DT_RELA;
  for (; dyn->d_tag != DT_NULL; ++dyn) {
    switch (dyn->d_tag) {
      case DT_JMPREL: jmprel = object.pointer(dyn->d_un.d_ptr); break;
      case DT_PLTRELSZ: pltrelsz = dyn->d_un.d_val; break;
      case DT_PLTREL: pltrel = static_cast<ElfW(Sxword)>(dyn->d_un.d_val); break;
      case DT_RELA: rela = object.pointer(dyn->d_un.d_ptr); break;
      case DT_RELASZ: relasz = dyn->d_un.d_val; break;
      case DT_RELAENT: relaent = dyn->d_un.d_val; break;
      case DT_SYMTAB: symtab = object.pointer(dyn->d_un.d_ptr); break;
      case DT_STRTAB: strtab = object.pointer(dyn->d_un.d_ptr); break;
      case DT_STRSZ: strsz = dyn->d_un.d_val; break;
      default: break;
    }
  }
  if (!symtab || !strtab || relaent != sizeof(ElfW(Rela))) return 0;
  const auto* symbols = reinterpret_cast<const ElfW(Sym)*>(symtab);
  const auto* strings = reinterpret_cast<const char*>(strtab);
  if (jmprel && pltrel == DT_RELA)
    if (int rc = rebind(walk, object, reinterpret_cast<const ElfW(Rela)*>(jmprel), pltrelsz, symbols,
                        strings, strsz); rc != 0)
      return rc;
  if (rela)
    if (int rc = rebind(walk, object, reinterpret_cast<const ElfW(Rela)*>(rela), relasz, symbols,
                        strings, strsz); rc != 0)
      return rc;
  return 0;
}

inline int on_object(dl_phdr_info* info, std::size_t, void* data) {
  auto& walk = *static_cast<Walk*>(data);
  walk.error = rebind_object(walk, *info);
  return walk.error;  // non-zero stops the walk
}

// Puts back every recorded slot that still holds our value, newest first; empties the table.
// Returns 0 or the first -errno (the other slots are restored all the same).
inline int restore(Table& table) {
  int first_error = 0;
  while (table.used > 0) {
    const Patch& p = table.patches[--table.used];
    // The object may have been unloaded since attach: find it again (and the protection the
    // loader left on the slot's page) before touching the slot.
    struct Find {
      std::uintptr_t address;
      int prot;
    } find{reinterpret_cast<std::uintptr_t>(p.slot), -1};
    dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* data) {
          auto& f = *static_cast<Find*>(data);
          const Object object(*info);
          if (!object.contains(f.address)) return 0;
          f.prot = object.protection(f.address);
          return 1;
        },
        &find);
    if (find.prot < 0) continue;  // unloaded: nothing to restore
    if (__atomic_load_n(p.slot, __ATOMIC_ACQUIRE) != p.new_value) continue;  // someone rebound it
    if (int rc = write_slot(p.slot, p.old_value, find.prot); rc != 0 && first_error == 0) first_error = rc;
  }
  return first_error;
}

inline void self_marker() {}

}  // namespace detail

// A linker with room for `Capacity` rebound slots. attach() rebinds every loaded object's
// references to the interposed symbols; on any failure it undoes what it did and returns
// -errno (-ENOSPC: the table is full; -EALREADY: attached already; -EINVAL: bad list; mprotect's
// errno). detach() restores the slots and returns 0 or the first -errno.
template <std::size_t Capacity = GEARS_USER_LINK_MAX_PATCHES>
class Linker {
 public:
  int attach(const Interposer* interposers, std::size_t count) {
#if defined(__x86_64__)
    Lock lock(mutex_);
    if (attached_) return -EALREADY;
    for (std::size_t i = 0; i < count; ++i)
      if (!interposers[i].symbol || !interposers[i].address) return -EINVAL;
    used_ = 0;
    attached_ = true;
    if (count == 0) return 0;  // a service without interposed symbols: nothing to rebind
    detail::Table table{patches_, Capacity, used_};
    detail::Walk walk{interposers, count, &table,
                      reinterpret_cast<std::uintptr_t>(&detail::self_marker),
                      static_cast<std::uintptr_t>(getauxval(AT_SYSINFO_EHDR)),
                      static_cast<std::uintptr_t>(getauxval(AT_BASE)), 0};
    dl_iterate_phdr(&detail::on_object, &walk);
    if (walk.error != 0) {
      detail::restore(table);
      attached_ = false;
      return walk.error;
    }
    return 0;
#else
    (void)interposers;
    (void)count;
    return -ENOSYS;
#endif
  }

  // Safe to call when not attached (a failed or missing attach): returns 0.
  int detach() {
    Lock lock(mutex_);
    if (!attached_) return 0;
    attached_ = false;
    detail::Table table{patches_, Capacity, used_};
    return detail::restore(table);
  }

  // Slots currently rebound (for logs and tests).
  std::size_t patched() {
    Lock lock(mutex_);
    return used_;
  }

 private:
  struct Lock {
    explicit Lock(pthread_mutex_t& m) : mutex(m) { pthread_mutex_lock(&mutex); }
    ~Lock() { pthread_mutex_unlock(&mutex); }
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;
    pthread_mutex_t& mutex;
  };

  pthread_mutex_t mutex_ = PTHREAD_MUTEX_INITIALIZER;
  bool attached_ = false;
  std::size_t used_ = 0;
  Patch patches_[Capacity] = {};
};

// The user half's one linker, used by the entry points gearsc emits:
//   extern "C" int gears_user_attach_v1() { return gears::user::link::attach(list, n); }
inline Linker<>& the_linker() {
  static Linker<> linker;  // constant-initialised: no guard, no allocation
  return linker;
}
inline int attach(const Interposer* interposers, std::size_t count) {
  return the_linker().attach(interposers, count);
}
inline int detach() { return the_linker().detach(); }

}  // namespace gears::user::link

#pragma GCC visibility pop

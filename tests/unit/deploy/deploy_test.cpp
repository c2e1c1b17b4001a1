// deploy (host-vmm/deploy/): bundle validation, the service manager's ordering and rollback
// against a recording GuestInjector, the ServiceHost given to VMM halves, syscall
// subscriptions, the control commands and gearsctl's deploy arguments. The real sample plugin
// is loaded from file-audit.gears when one is built ($GEARS_SAMPLE_BUNDLE, else next to this
// binary's build tree); the real injector is tested on a real guest.
#include <elf.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "deploy/bundle_check.h"
#include "deploy/elf_inspect.h"
#include "deploy/service_manager.h"
#include "gears/bundle.h"
#include "gearsctl/args.h"
#include "gearsctl/format.h"
#include "tools/execve/exec_rules.h"
#include "x86/bzimage.h"
#include "ovl_shared.h"

namespace {

using namespace gears;
using namespace gears::vmm;
using namespace gears::vmm::deploy;
using control::Json;
using std::chrono::milliseconds;

// The release the synthetic bundles below are built for: a fixture of these tests, never the
// guest kernel the archive serves today (the real sample bundle is checked against its own
// .ko's vermagic, RealFileAuditBundle).
constexpr const char* kRelease = "6.1.0-56-amd64";
constexpr uint16_t kServiceId = 0x4242;

// ---------------------------------------------------------------------------------------------
// A minimal ELF64 writer: section headers only (what the checks read), no program headers.
struct ElfSpec {
  uint16_t type = ET_DYN;
  uint16_t machine = EM_X86_64;
  std::vector<std::string> exports;  // defined global functions in .dynsym
  std::vector<std::string> imports;  // undefined ones (must not count as exports)
  std::vector<std::string> modinfo;  // "key=value" strings
};

std::vector<uint8_t> make_elf(const ElfSpec& spec) {
  std::string shstr("\0.shstrtab\0.dynstr\0.dynsym\0.modinfo\0.text\0", 43);
  std::string dynstr(1, '\0');
  std::vector<Elf64_Sym> syms(1);
  auto add_sym = [&](const std::string& n, bool defined) {
    Elf64_Sym s{};
    s.st_name = static_cast<uint32_t>(dynstr.size());
    dynstr += n + '\0';
    s.st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC);
    s.st_shndx = defined ? 5 : SHN_UNDEF;
    syms.push_back(s);
  };
  for (const auto& e : spec.exports) add_sym(e, true);
  for (const auto& i : spec.imports) add_sym(i, false);
  std::string modinfo;
  for (const auto& m : spec.modinfo) modinfo += m + '\0';

  std::vector<uint8_t> out(sizeof(Elf64_Ehdr));
  auto append = [&](const void* p, size_t n) {
    while (out.size() % 8) out.push_back(0);
    const size_t off = out.size();
    out.insert(out.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    return off;
  };
  const size_t shstr_off = append(shstr.data(), shstr.size());
  const size_t dynstr_off = append(dynstr.data(), dynstr.size());
  const size_t dynsym_off = append(syms.data(), syms.size() * sizeof(Elf64_Sym));
  const size_t modinfo_off = append(modinfo.data(), modinfo.size());
  const uint8_t text[16] = {0xc3};
  const size_t text_off = append(text, sizeof text);
  std::vector<Elf64_Shdr> sh(6);
  sh[1] = {1, SHT_STRTAB, 0, 0, shstr_off, shstr.size(), 0, 0, 1, 0};
  sh[2] = {11, SHT_STRTAB, SHF_ALLOC, 0, dynstr_off, dynstr.size(), 0, 0, 1, 0};
  sh[3] = {19, SHT_DYNSYM, SHF_ALLOC, 0, dynsym_off, syms.size() * sizeof(Elf64_Sym), 2, 1, 8, sizeof(Elf64_Sym)};
  sh[4] = {27, SHT_PROGBITS, 0, 0, modinfo_off, modinfo.size(), 0, 0, 1, 0};
  sh[5] = {36, SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, 0, text_off, sizeof text, 0, 0, 16, 0};
  const size_t sh_off = append(sh.data(), sh.size() * sizeof(Elf64_Shdr));
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = spec.type;
  eh.e_machine = spec.machine;
  eh.e_version = EV_CURRENT;
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_shoff = sh_off;
  eh.e_shentsize = sizeof(Elf64_Shdr);
  eh.e_shnum = static_cast<uint16_t>(sh.size());
  eh.e_shstrndx = 1;
  std::memcpy(out.data(), &eh, sizeof eh);
  return out;
}

ElfSpec vmm_spec() { return {ET_DYN, EM_X86_64, {GEARS_PLUGIN_ENTRY}, {}, {}}; }
ElfSpec user_spec() { return {ET_DYN, EM_X86_64, {"open", "openat", "gears_user_attach_v1"}, {"dlsym"}, {}}; }
ElfSpec kernel_spec(const std::string& vermagic = std::string(kRelease) + " SMP preempt mod_unload modversions ") {
  return {ET_REL, EM_X86_64, {}, {}, {"license=GPL", "name=gears_test_svc", "vermagic=" + vermagic}};
}

Json manifest(bool vmm = true, bool user = true, bool kernel = true) {
  Json halves = Json::object();
  if (vmm) halves["vmm"] = "svc.vmm.so";
  if (user) halves["guest_user"] = "svc.user.so";
  if (kernel) halves["guest_kernel"] = "svc.ko";
  return Json{{"schema", 1},
              {"service", {{"name", "test-svc"}, {"version", "2.0"}, {"id", kServiceId}}},
              {"halves", halves},
              {"exports", {{"vmm", {GEARS_PLUGIN_ENTRY}}, {"guest_user", {"open", "openat"}}}},
              {"patch_points",
               {{{"kind", "interpose"}, {"library", "libc.so.6"}, {"symbol", "open"}, {"programs", {"cat", "sh"}}},
                {{"kind", "interpose"}, {"library", "libc.so.6"}, {"symbol", "openat"}, {"programs", {"cat"}}},
                {{"kind", "kernel_hook"}, {"hook", "do_sys_openat2"}}}}};
}

struct Halves {
  std::optional<std::vector<uint8_t>> vmm = make_elf(vmm_spec());
  std::optional<std::vector<uint8_t>> user = make_elf(user_spec());
  std::optional<std::vector<uint8_t>> kernel = make_elf(kernel_spec());
};

std::vector<uint8_t> make_bundle(const Json& m, const Halves& h = {}) {
  std::vector<bundle::Entry> e;
  const std::string text = m.dump();
  e.push_back({GEARS_BUNDLE_MANIFEST, "manifest.json", {text.begin(), text.end()}});
  if (h.vmm) e.push_back({GEARS_BUNDLE_VMM_HALF, "svc.vmm.so", *h.vmm});
  if (h.user) e.push_back({GEARS_BUNDLE_USER_HALF, "svc.user.so", *h.user});
  if (h.kernel) e.push_back({GEARS_BUNDLE_KERNEL_HALF, "svc.ko", *h.kernel});
  auto image = bundle::write(e);
  EXPECT_TRUE(image) << image.error().what();
  return *image;
}

// ---------------------------------------------------------------------------------------------
// The recording injector: every call appended to `calls`; `fail_at` makes one call fail.
class FakeInjector final : public GuestInjector {
 public:
  std::vector<std::string> calls;
  std::string fail_at;                // e.g. "load_module", "add_exec_env:sh"
  std::string fail_also;              // a second call that fails
  std::vector<ProcessInjection> matches;  // what load_library finds per selector
  std::vector<std::vector<uint8_t>> written;
  std::vector<ProcessInjection> unloaded;
  uint64_t next_env = 100;

  Expected<void> step(const std::string& call) {
    calls.push_back(call);
    for (const auto* f : {&fail_at, &fail_also})
      if (!f->empty() && call.rfind(*f, 0) == 0) return fail("injected failure in " + call);
    return {};
  }
  Expected<void> load_module(std::span<const uint8_t>, const std::string&, milliseconds) override {
    return step("load_module");
  }
  Expected<void> unload_module(const std::string& name, milliseconds) override { return step("unload_module:" + name); }
  Expected<void> write_file(const std::string& path, std::span<const uint8_t> data, uint32_t mode, milliseconds) override {
    written.emplace_back(data.begin(), data.end());
    EXPECT_EQ(mode, 0644u);
    return step("write_file:" + path);
  }
  Expected<void> remove_file(const std::string& path, milliseconds) override { return step("remove_file:" + path); }
  Expected<std::vector<ProcessInjection>> load_library(const ProcessSelector& sel, const std::string& path,
                                                       const std::string& attach, milliseconds) override {
    EXPECT_EQ(attach, "gears_user_attach_v1");
    const std::string what = sel.kind == ProcessSelector::Kind::pid ? "pid=" + std::to_string(sel.pid)
                             : sel.kind == ProcessSelector::Kind::exe_glob ? "exe=" + sel.pattern
                                                                           : "library=" + sel.pattern;
    GEARS_TRY(step("load_library:" + what + ":" + path));
    std::vector<ProcessInjection> found;  // as the real injector: excluded pids are left alone
    for (const auto& m : matches)
      if (std::find(sel.exclude_pids.begin(), sel.exclude_pids.end(), m.pid) == sel.exclude_pids.end())
        found.push_back(m);
    return found;
  }
  Expected<std::vector<ProcessInjection>> unload_library(const std::vector<ProcessInjection>& loaded,
                                                         const std::string& detach, milliseconds) override {
    EXPECT_EQ(detach, "gears_user_detach_v1");
    GEARS_TRY(step("unload_library:" + std::to_string(loaded.size())));
    unloaded = loaded;
    return loaded;
  }
  Expected<uint64_t> add_exec_env(const std::string& glob, const execve::EnvEdit& edit) override {
    GEARS_TRY(step("add_exec_env:" + glob + ":" + execve::edit_text(edit)));
    return next_env++;
  }
  void remove_exec_env(uint64_t id) override { calls.push_back("remove_exec_env:" + std::to_string(id)); }
};

// An in-process VMM half (no dlopen): what start() does is set per test.
int g_start_result = 0;
bool g_start_subscribes = false;
int64_t hc_answer(GuestContext&, const HypercallArgs& a) { return static_cast<int64_t>(a.regs[0] + 1); }
const PluginHypercall kHypercalls[] = {{static_cast<uint32_t>(GEARS_HC_MAKE(kServiceId, 1)), "answer", &hc_answer}};
int test_start(ServiceHost& host) {
  host.log("started");
  if (g_start_subscribes) {
    const uint32_t nrs[] = {39};
    if (!host.on_syscall(nrs, [](GuestContext&, const SyscallEvent&) {})) return 7;
  }
  return g_start_result;
}
PluginDescriptor g_descriptor = {kPluginAbiVersion, "test-svc", "2.0", kServiceId, "{}", kHypercalls, 1, &test_start};

class DeployTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_start_result = 0;
    g_start_subscribes = false;
    g_descriptor = {kPluginAbiVersion, "test-svc", "2.0", kServiceId, "{}", kHypercalls, 1, &test_start};
    inj.matches = {ok_process(101, "/bin/cat"), failed_process(102, "/bin/cat")};
    auto m = GuestMemory::create(2 << 20);
    ASSERT_TRUE(m);
    mem = std::move(*m);
  }
  static ProcessInjection ok_process(int64_t pid, std::string exe) {
    ProcessInjection p;
    p.pid = pid;
    p.exe = std::move(exe);
    p.ok = true;
    p.handle = 0x1000 + static_cast<uint64_t>(pid);
    p.latency_ms = 1.5;
    return p;
  }
  static ProcessInjection failed_process(int64_t pid, std::string exe) {
    ProcessInjection p;
    p.pid = pid;
    p.exe = std::move(exe);
    p.error = "dlopen: no such file";
    return p;
  }
  ManagerConfig config() {
    ManagerConfig c;
    c.injector = &inj;
    c.dispatcher = &dispatcher;
    c.subscriptions = &subs;
    c.guest_release = kRelease;
    c.open_plugin = [this](std::span<const uint8_t>, const std::string&) -> Expected<std::shared_ptr<PluginLibrary>> {
      ++opened;
      return PluginLibrary::of_descriptor(&g_descriptor);
    };
    return c;
  }
  // The hypercall of the test service, as the guest kernel would make it.
  hypercall::DispatchResult call_answer(uint64_t arg) {
    VcpuRegs regs{};
    regs.rax = GEARS_HC_MAKE(kServiceId, 1);
    regs.rdi = arg;
    return dispatcher.dispatch(Origin::guest_kernel, 0, regs, mem);
  }

  FakeInjector inj;
  hypercall::HypercallDispatcher dispatcher;
  syscall_exit::SyscallExitTool exits;
  SyscallSubscriptions subs{&exits};
  GuestMemory mem;
  int opened = 0;
};

// ---------------------------------------------------------------------------------------------
// bzImage release

std::vector<uint8_t> fake_bzimage(const std::string& version, uint16_t ptr = 0x100) {
  std::vector<uint8_t> f(0x400, 0);
  f[0x1fe] = 0x55;
  f[0x1ff] = 0xaa;
  std::memcpy(f.data() + 0x202, "HdrS", 4);
  std::memcpy(f.data() + 0x20e, &ptr, 2);
  if (ptr + 0x200u + version.size() <= f.size()) std::memcpy(f.data() + ptr + 0x200, version.data(), version.size());
  return f;
}

TEST(KernelRelease, FirstWordOfTheVersionString) {
  auto r = x86::kernel_release(fake_bzimage("6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP"));
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ(*r, "6.1.0-56-amd64");
}

TEST(KernelRelease, HostileHeadersAreErrors) {
  EXPECT_FALSE(x86::kernel_release(std::vector<uint8_t>(0x100, 0)));           // too small
  EXPECT_FALSE(x86::kernel_release(fake_bzimage("6.1.0", 0)));                 // no string
  EXPECT_FALSE(x86::kernel_release(fake_bzimage("6.1.0", 0x7000)));            // outside the file
  EXPECT_FALSE(x86::kernel_release(fake_bzimage("")));                         // empty
  EXPECT_FALSE(x86::kernel_release(fake_bzimage("6.1\x01")));                  // not printable
  EXPECT_FALSE(x86::kernel_release(fake_bzimage(std::string(0x100, 'x'))));    // runs to EOF
  auto no_magic = fake_bzimage("6.1.0");
  no_magic[0x202] = 'X';
  EXPECT_FALSE(x86::kernel_release(no_magic));
}

TEST(KernelRelease, RealGuestKernelWhenPresent) {
  const char* path = std::getenv("GEARS_GUEST_KERNEL");
#ifdef GEARS_DEFAULT_GUEST_KERNEL
  if (!path && ::access(GEARS_DEFAULT_GUEST_KERNEL, R_OK) == 0) path = GEARS_DEFAULT_GUEST_KERNEL;
#endif
  if (!path) GTEST_SKIP() << "no guest kernel built (or set GEARS_GUEST_KERNEL to a bzImage)";
  auto file = x86::read_file(path, "kernel");
  ASSERT_TRUE(file);
  auto r = x86::kernel_release(*file);
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_NE(r->find('.'), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// ELF inspection

TEST(ElfImage, ExportsAndModinfo) {
  auto so = make_elf(user_spec());
  auto elf = ElfImage::parse(so);
  ASSERT_TRUE(elf) << elf.error().what();
  EXPECT_EQ(elf->type(), ET_DYN);
  auto ex = elf->dynamic_exports();
  ASSERT_TRUE(ex);
  EXPECT_EQ(*ex, (std::set<std::string>{"open", "openat", "gears_user_attach_v1"}));  // not dlsym
  auto ko = make_elf(kernel_spec());
  auto kelf = ElfImage::parse(ko);
  ASSERT_TRUE(kelf);
  EXPECT_EQ(*kelf->modinfo("name"), "gears_test_svc");
  EXPECT_FALSE(kelf->modinfo("srcversion"));
}

TEST(ElfImage, MalformedFilesAreErrors) {
  auto so = make_elf(user_spec());
  EXPECT_FALSE(ElfImage::parse(std::span<const uint8_t>(so).first(40)));
  auto truncated = so;
  truncated.resize(so.size() - 8);  // the section table runs past the end
  EXPECT_FALSE(ElfImage::parse(truncated));
  auto bad = so;
  reinterpret_cast<Elf64_Ehdr*>(bad.data())->e_shstrndx = 99;
  EXPECT_FALSE(ElfImage::parse(bad));
  bad = so;
  auto* eh = reinterpret_cast<Elf64_Ehdr*>(bad.data());
  auto* sh = reinterpret_cast<Elf64_Shdr*>(bad.data() + eh->e_shoff);
  sh[3].sh_size = ~0ull;  // .dynsym's size overflows
  EXPECT_FALSE(ElfImage::parse(bad));
  bad = so;
  eh = reinterpret_cast<Elf64_Ehdr*>(bad.data());
  sh = reinterpret_cast<Elf64_Shdr*>(bad.data() + eh->e_shoff);
  sh[2].sh_size = 2;  // symbol names no longer inside .dynstr
  auto elf = ElfImage::parse(bad);
  ASSERT_TRUE(elf);
  EXPECT_FALSE(elf->dynamic_exports());
  bad = so;
  bad[EI_CLASS] = ELFCLASS32;
  EXPECT_FALSE(ElfImage::parse(bad));
}

// ---------------------------------------------------------------------------------------------
// Bundle validation

TEST(CheckBundle, AcceptsAGoodBundle) {
  auto b = check_bundle(make_bundle(manifest()), kRelease);
  ASSERT_TRUE(b) << b.error().what();
  EXPECT_EQ(b->name, "test-svc");
  EXPECT_EQ(b->version, "2.0");
  EXPECT_EQ(b->id, kServiceId);
  EXPECT_EQ(b->programs, (std::vector<std::string>{"cat", "sh"}));
  EXPECT_EQ(b->module_name, "gears_test_svc");
  ASSERT_TRUE(b->vmm && b->user && b->kernel);
  EXPECT_EQ(b->user->file, "svc.user.so");
}

void expect_refused(const std::vector<uint8_t>& image, const std::string& part, const std::string& release = kRelease) {
  auto b = check_bundle(image, release);
  ASSERT_FALSE(b) << "accepted a bundle that should fail with: " << part;
  EXPECT_NE(b.error().what().find(part), std::string::npos) << b.error().what();
}

TEST(CheckBundle, RefusesWhatIsWrong) {
  auto good = make_bundle(manifest());
  auto corrupt = good;
  corrupt[corrupt.size() - 3] ^= 0xff;  // a blob's CRC no longer matches
  expect_refused(corrupt, "bundle:");
  expect_refused(std::vector<uint8_t>(good.begin(), good.begin() + 100), "bundle:");
  Halves h;
  h.kernel = make_elf(kernel_spec("6.1.0-55-amd64 SMP preempt mod_unload modversions "));
  expect_refused(make_bundle(manifest(), h), "was built for kernel 6.1.0-55-amd64, the guest runs 6.1.0-56-amd64");
  h = Halves{};
  h.kernel = make_elf(kernel_spec("6.1.0-56-amd64-rt SMP"));  // a prefix is not the release
  expect_refused(make_bundle(manifest(), h), "was built for kernel");
  expect_refused(good, "release is unknown", "");
  h = Halves{};
  h.kernel.reset();
  expect_refused(make_bundle(manifest(), h), "lacks the guest_kernel half");
  expect_refused(make_bundle(manifest(true, true, false)), "the manifest does not name");
  h = Halves{};
  h.user = make_elf({ET_DYN, EM_X86_64, {"open"}, {}, {}});
  expect_refused(make_bundle(manifest(), h), "does not export openat");
  h = Halves{};
  h.user = make_elf({ET_DYN, EM_AARCH64, {"open", "openat"}, {}, {}});
  expect_refused(make_bundle(manifest(), h), "not an x86-64");
  h = Halves{};
  h.vmm = make_elf({ET_DYN, EM_X86_64, {"something_else"}, {}, {}});
  expect_refused(make_bundle(manifest(), h), "does not export gears_service_plugin_v1");
  h = Halves{};
  h.kernel = make_elf(user_spec());
  expect_refused(make_bundle(manifest(), h), "not a kernel module");
  h = Halves{};
  h.kernel = std::vector<uint8_t>{'n', 'o', 't', 'E', 'L', 'F'};
  expect_refused(make_bundle(manifest(), h), "kernel half svc.ko");
  auto m = manifest();
  m["schema"] = 2;
  expect_refused(make_bundle(m), "schema");
  m = manifest();
  m["service"]["name"] = "../etc/passwd";
  expect_refused(make_bundle(m), "bad service name");
  m = manifest();
  m["service"]["id"] = 0;
  expect_refused(make_bundle(m), "id");
  m = manifest();
  m["halves"]["guest_user"] = "other.so";
  expect_refused(make_bundle(m), "the manifest names other.so");
  m = manifest();
  m["patch_points"][0]["programs"] = "cat";
  expect_refused(make_bundle(m), "list of strings");
  std::vector<bundle::Entry> e = {{GEARS_BUNDLE_MANIFEST, "manifest.json", {'{', 'x'}}};
  expect_refused(*bundle::write(e), "not valid JSON");
}

// ---------------------------------------------------------------------------------------------
// The manager: ordering, status, undeploy

TEST_F(DeployTest, DeploysInOrderAndUndeploysInReverse) {
  ServiceManager mgr(config());
  auto st = mgr.deploy(make_bundle(manifest()), {});
  ASSERT_TRUE(st) << st.error().what();
  const std::string path = "/run/gears-test-svc.user.so";
  EXPECT_EQ(inj.calls, (std::vector<std::string>{
                           "load_module",
                           "write_file:" + path,
                           "load_library:exe=cat:" + path,
                           "load_library:exe=sh:" + path,
                           "add_exec_env:cat:LD_PRELOAD+=" + path,
                           "add_exec_env:sh:LD_PRELOAD+=" + path,
                       }));
  ASSERT_EQ(inj.written.size(), 1u);
  EXPECT_EQ(inj.written[0], make_elf(user_spec()));
  EXPECT_EQ((*st)["vmm"]["state"], "loaded");
  EXPECT_EQ((*st)["kernel"]["state"], "loaded");
  EXPECT_EQ((*st)["user"]["state"], "written");
  // Two selectors match the same two processes: each is injected once (the second selector
  // excludes the pids of the first).
  EXPECT_EQ((*st)["user"]["processes"].size(), 2u);
  EXPECT_EQ((*st)["user"]["injected"], 1);
  EXPECT_EQ((*st)["user"]["processes"][1]["error"], "dlopen: no such file");
  EXPECT_EQ((*st)["log"], Json::array({"started"}));
  for (const char* timing : {"deploy_ms", "module_ms", "user_file_ms"}) {  // tests/bench/deploy-bench reads them
    ASSERT_TRUE((*st)[timing].is_number()) << timing;
    EXPECT_GE((*st)[timing].get<double>(), 0.0) << timing;
  }

  auto r = call_answer(41);
  EXPECT_TRUE(r.handled);
  EXPECT_EQ(r.result, 42);
  EXPECT_EQ(mgr.services()["services"][0]["vmm"]["calls"], 1);

  inj.calls.clear();
  auto u = mgr.undeploy("test-svc");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->errors.empty());
  EXPECT_EQ(inj.calls, (std::vector<std::string>{"remove_exec_env:100", "remove_exec_env:101", "unload_library:1",
                                                 "remove_file:" + path, "unload_module:gears_test_svc"}));
  for (const auto& p : inj.unloaded) EXPECT_TRUE(p.ok);
  EXPECT_FALSE(call_answer(1).handled);
  EXPECT_TRUE(mgr.services()["services"].empty());
  EXPECT_FALSE(mgr.undeploy("test-svc"));
}

// A plugin-style user half (GEARS_USER_HALF_INSTALL): written where its program looks for
// plugins, preloaded nowhere (no interposers), removed at undeploy; one service per path.
TEST_F(DeployTest, UserHalfInstalledAtTheManifestsPath) {
  ServiceManager mgr(config());
  Json m = manifest();
  m["patch_points"] = Json::array();
  const std::string path = "/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/mca_btl_test.so";
  m["user_half"] = {{"install", path}};
  auto st = mgr.deploy(make_bundle(m), {});
  ASSERT_TRUE(st) << st.error().what();
  EXPECT_EQ(inj.calls, (std::vector<std::string>{"load_module", "write_file:" + path}));
  EXPECT_EQ((*st)["user"]["path"], path);

  Json other = m;
  other["service"]["name"] = "other-svc";
  other["service"]["id"] = 0x4343;
  auto clash = mgr.deploy(make_bundle(other), {});
  ASSERT_FALSE(clash);
  EXPECT_NE(clash.error().what().find("already installs its user half at " + path), std::string::npos)
      << clash.error().what();

  inj.calls.clear();
  ASSERT_TRUE(mgr.undeploy("test-svc"));
  EXPECT_EQ(inj.calls, (std::vector<std::string>{"remove_file:" + path, "unload_module:gears_test_svc"}));
}

TEST(CheckBundle, UserHalfInstallPathsAreValidated) {
  Json m = manifest();
  m["user_half"] = {{"install", "/opt/x/plugin.so"}};
  auto b = check_bundle(make_bundle(m), kRelease);
  ASSERT_TRUE(b) << b.error().what();
  EXPECT_EQ(b->user_install, "/opt/x/plugin.so");
  for (const char* bad : {"", "/", "rel/x.so", "/a/../etc/passwd", "/a/./b", "/a//b", "/a/", "/a/..", "/a b",
                          "/a\x01"}) {
    m["user_half"] = {{"install", bad}};
    expect_refused(make_bundle(m), "bad user_half.install path");
  }
  m["user_half"] = "/opt/x";
  expect_refused(make_bundle(m), "\"user_half\" must be an object");
  m["user_half"] = {{"install", 7}};
  expect_refused(make_bundle(m), "must be a string");
}

TEST_F(DeployTest, SelectorFromTheCallerReplacesTheManifestPrograms) {
  ServiceManager mgr(config());
  DeployOptions o;
  o.selector = ProcessSelector::of(ProcessSelector::Kind::pid, 77, "");
  ASSERT_TRUE(mgr.deploy(make_bundle(manifest()), o));
  EXPECT_EQ(inj.calls[2], "load_library:pid=77:/run/gears-test-svc.user.so");
  EXPECT_EQ(inj.calls.size(), 5u);  // one load_library, env rules still per program
}

TEST_F(DeployTest, ASecondDeployOfTheSameServiceIsRefusedUntouched) {
  ServiceManager mgr(config());
  ASSERT_TRUE(mgr.deploy(make_bundle(manifest()), {}));
  inj.calls.clear();
  auto again = mgr.deploy(make_bundle(manifest()), {});
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().what().find("already deployed"), std::string::npos);
  EXPECT_TRUE(inj.calls.empty());
  EXPECT_EQ(opened, 1);
  EXPECT_TRUE(call_answer(1).handled);  // the first one is intact
}

TEST_F(DeployTest, InvalidBundleTouchesNothing) {
  ServiceManager mgr(config());
  Halves h;
  h.kernel = make_elf(kernel_spec("5.10.0-1-amd64 SMP"));
  EXPECT_FALSE(mgr.deploy(make_bundle(manifest(), h), {}));
  EXPECT_TRUE(inj.calls.empty());
  EXPECT_EQ(opened, 0);
}

struct RollbackCase {
  std::string fail_at;
  std::vector<std::string> expected_tail;  // the calls after the failing one
};

TEST_F(DeployTest, EachFailureUndoesWhatWasDone) {
  const std::string path = "/run/gears-test-svc.user.so";
  const std::vector<RollbackCase> cases = {
      {"load_module", {}},
      {"write_file", {"unload_module:gears_test_svc"}},
      {"load_library:exe=sh", {"unload_library:1", "remove_file:" + path, "unload_module:gears_test_svc"}},
      {"add_exec_env:sh",
       {"remove_exec_env:100", "unload_library:1", "remove_file:" + path, "unload_module:gears_test_svc"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.fail_at);
    inj = FakeInjector{};
    inj.matches = {ok_process(101, "/bin/cat"), failed_process(102, "/bin/cat")};
    inj.fail_at = c.fail_at;
    ServiceManager mgr(config());
    auto st = mgr.deploy(make_bundle(manifest()), {});
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().what().find("injected failure"), std::string::npos) << st.error().what();
    auto failed = std::find_if(inj.calls.begin(), inj.calls.end(),
                               [&](const std::string& call) { return call.rfind(c.fail_at, 0) == 0; });
    ASSERT_NE(failed, inj.calls.end());
    EXPECT_EQ(std::vector<std::string>(failed + 1, inj.calls.end()), c.expected_tail);
    EXPECT_FALSE(call_answer(1).handled);  // the VMM half is gone as well
    EXPECT_TRUE(mgr.services()["services"].empty());
    // Nothing is left half-deployed: the same bundle deploys now.
    inj.fail_at.clear();
    EXPECT_TRUE(mgr.deploy(make_bundle(manifest()), {}));
  }
}

TEST_F(DeployTest, RollbackErrorsAreReported) {
  ServiceManager mgr(config());
  inj.fail_at = "write_file";
  inj.fail_also = "unload_module";  // and undoing the kernel half fails too
  auto st = mgr.deploy(make_bundle(manifest()), {});
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().what().find("rollback incomplete: unloading kernel module gears_test_svc: injected failure"),
            std::string::npos)
      << st.error().what();
  // undeploy goes on past errors, reports them, and forgets the service.
  inj.fail_at.clear();
  inj.fail_also.clear();
  ASSERT_TRUE(mgr.deploy(make_bundle(manifest()), {}));
  inj.fail_at = "remove_file";
  inj.fail_also = "unload_module";
  inj.calls.clear();
  auto u = mgr.undeploy("test-svc");
  ASSERT_TRUE(u);
  ASSERT_EQ(u->errors.size(), 2u);
  EXPECT_NE(u->errors[0].find("removing /run/gears-test-svc.user.so"), std::string::npos);
  EXPECT_NE(u->errors[1].find("unloading kernel module"), std::string::npos);
  EXPECT_EQ(inj.calls.back(), "unload_module:gears_test_svc");
  EXPECT_TRUE(mgr.services()["services"].empty());
}

TEST_F(DeployTest, PluginStartCanRefuse) {
  g_start_result = 3;
  ServiceManager mgr(config());
  auto st = mgr.deploy(make_bundle(manifest()), {});
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().what().find("returned 3"), std::string::npos);
  EXPECT_TRUE(inj.calls.empty());
  EXPECT_FALSE(call_answer(1).handled);
}

TEST_F(DeployTest, DescriptorMustMatchTheManifest) {
  ServiceManager mgr(config());
  g_descriptor.service_name = "other";
  auto st = mgr.deploy(make_bundle(manifest()), {});
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().what().find("VMM half is service \"other\""), std::string::npos) << st.error().what();
  g_descriptor.service_name = "test-svc";
  g_descriptor.abi_version = 9;
  EXPECT_FALSE(mgr.deploy(make_bundle(manifest()), {}));
  g_descriptor.abi_version = kPluginAbiVersion;
  g_descriptor.service_id = kServiceId + 1;
  EXPECT_FALSE(mgr.deploy(make_bundle(manifest()), {}));
  // A hypercall outside the service's own number range is refused (undeploy could not remove it).
  g_descriptor.service_id = kServiceId;
  static const PluginHypercall foreign[] = {{static_cast<uint32_t>(GEARS_HC_MAKE(0, 1)), "ping", &hc_answer}};
  g_descriptor.hypercalls = foreign;
  auto st2 = mgr.deploy(make_bundle(manifest()), {});
  ASSERT_FALSE(st2);
  EXPECT_NE(st2.error().what().find("not in service"), std::string::npos) << st2.error().what();
  EXPECT_TRUE(inj.calls.empty());
}

TEST_F(DeployTest, VmmOnlyServiceNeedsNoInjector) {
  auto cfg = config();
  cfg.injector = nullptr;
  ServiceManager mgr(cfg);
  Halves h;
  h.user.reset();
  h.kernel.reset();
  auto st = mgr.deploy(make_bundle(manifest(true, false, false), h), {});
  ASSERT_TRUE(st) << st.error().what();
  EXPECT_EQ((*st)["user"]["state"], "absent");
  EXPECT_FALSE(mgr.deploy(make_bundle(manifest()), {}));  // guest halves need an injector
}

TEST_F(DeployTest, ServiceHostSyscallSubscriptionsComeAndGo) {
  g_start_subscribes = true;
  ServiceManager mgr(config());
  ASSERT_TRUE(mgr.deploy(make_bundle(manifest()), {}));
  EXPECT_TRUE(exits.selected(39));
  EXPECT_EQ(subs.count("test-svc"), 1u);
  EXPECT_EQ(mgr.services()["services"][0]["vmm"]["subscriptions"], 1);
  ASSERT_TRUE(mgr.undeploy("test-svc"));
  EXPECT_FALSE(exits.selected(39));
  EXPECT_EQ(subs.count("test-svc"), 0u);
}

TEST_F(DeployTest, AClosedHostRefusesRegistrations) {
  auto host = std::make_shared<PluginServiceHost>("svc", kServiceId, dispatcher, &subs);
  ASSERT_TRUE(host->register_hypercall(GEARS_HC_MAKE(kServiceId, 2), &hc_answer));
  host->close();
  EXPECT_FALSE(host->register_hypercall(GEARS_HC_MAKE(kServiceId, 3), &hc_answer));
  const uint32_t nrs[] = {39};
  EXPECT_FALSE(host->on_syscall(nrs, [](GuestContext&, const SyscallEvent&) {}));
  EXPECT_TRUE(host->hypercalls().empty());
}

TEST_F(DeployTest, ProcessEventsNeedTracking) {
  auto host = std::make_shared<PluginServiceHost>("svc", kServiceId, dispatcher, &subs);
  auto r = host->on_process([](GuestContext&, const ProcessEvent&) {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what().find("--track-processes"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// SyscallSubscriptions on their own

TEST_F(DeployTest, SubscriptionsDeliverEntriesOfTheirNumbers) {
  subs.set_process_events(true);
  std::vector<uint64_t> seen;
  std::vector<std::string> procs;
  const uint32_t nrs[] = {2, 257};
  auto id = subs.add_syscalls("a", nrs, [&](GuestContext& g, const SyscallEvent& e) {
    EXPECT_EQ(g.origin(), Origin::guest_user);
    EXPECT_FALSE(e.is_exit);
    seen.push_back(e.nr * 1000 + e.args[1]);
  });
  ASSERT_TRUE(id);
  ASSERT_TRUE(subs.add_process("a", [&](GuestContext&, const ProcessEvent& e) {
    procs.push_back((e.kind == ProcessEvent::Kind::exec ? "exec " : "exit ") + e.comm + " " + std::to_string(e.pid));
  }));
  const uint32_t bad[] = {9999};
  EXPECT_FALSE(subs.add_syscalls("b", bad, [](GuestContext&, const SyscallEvent&) {}));
  EXPECT_TRUE(exits.selected(257));
  VcpuRegs regs{};
  syscall_exit::SyscallEvent ev;
  ev.nr = 257;
  ev.args[1] = 5;
  subs.on_syscall(mem, ev, regs);
  ev.nr = 3;
  subs.on_syscall(mem, ev, regs);
  EXPECT_EQ(seen, (std::vector<uint64_t>{257005}));

  ev.nr = 59;
  auto pe = process_event_of(ev, "/usr/bin/a-very-long-program-name", 42);
  ASSERT_TRUE(pe);
  subs.on_process(mem, 0, regs, *pe);
  ev.nr = 231;
  subs.on_process(mem, 0, regs, *process_event_of(ev, "", -1));
  ev.nr = 0;
  EXPECT_FALSE(process_event_of(ev, "", 1));
  EXPECT_EQ(procs, (std::vector<std::string>{"exec a-very-long-pro 42", "exit  -1"}));

  subs.remove(*id);
  EXPECT_FALSE(exits.selected(257));
  subs.on_syscall(mem, ev, regs);
  subs.remove_owner("a");
  EXPECT_EQ(subs.count("a"), 0u);
  EXPECT_EQ(subs.handler_errors(), 0u);
}

TEST_F(DeployTest, AThrowingHandlerIsCountedNotPropagated) {
  const uint32_t nrs[] = {39};
  ASSERT_TRUE(subs.add_syscalls("t", nrs, [](GuestContext&, const SyscallEvent&) { throw std::runtime_error("x"); }));
  VcpuRegs regs{};
  syscall_exit::SyscallEvent ev;
  ev.nr = 39;
  subs.on_syscall(mem, ev, regs);
  EXPECT_EQ(subs.handler_errors(), 1u);
}

TEST(LogRingTest, BoundedInLinesAndLength) {
  LogRing ring(3, 5);
  for (int i = 0; i < 5; ++i) ring.add("line-" + std::to_string(i));
  EXPECT_EQ(ring.last(10), (std::vector<std::string>{"line-", "line-", "line-"}));
  EXPECT_EQ(ring.total(), 5u);
  EXPECT_EQ(ring.last(1).size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Control commands and gearsctl

TEST_F(DeployTest, ControlCommands) {
  ServiceManager mgr(config());
  control::CommandRegistry reg;
  ASSERT_TRUE(mgr.register_commands(reg));
  auto path = std::filesystem::temp_directory_path() / ("gears-deploy-test-" + std::to_string(::getpid()) + ".gears");
  ASSERT_TRUE(bundle::write_file(path.string(), make_bundle(manifest())));

  auto r = reg.handle({{"cmd", "deploy"}, {"bundle", "relative.gears"}});
  EXPECT_FALSE(r["ok"].get<bool>());
  EXPECT_NE(r["error"].get<std::string>().find("absolute"), std::string::npos);
  r = reg.handle({{"cmd", "deploy"}, {"bundle", path.string()}, {"pid", 3}, {"exe", "cat"}});
  EXPECT_FALSE(r["ok"].get<bool>());
  r = reg.handle({{"cmd", "deploy"}, {"bundle", path.string()}, {"timeout_ms", 0}});
  EXPECT_FALSE(r["ok"].get<bool>());
  r = reg.handle({{"cmd", "deploy"}, {"bundle", path.string()}, {"library", "libc.so.6"}, {"timeout_ms", 5000}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(r["service"]["service"], "test-svc");
  EXPECT_EQ(inj.calls[2], "load_library:library=libc.so.6:/run/gears-test-svc.user.so");
  const std::string text = ctl::format_reply("deploy", r);
  EXPECT_NE(text.find("deployed test-svc 2.0"), std::string::npos) << text;
  EXPECT_NE(text.find("0x4242"), std::string::npos) << text;
  EXPECT_NE(text.find("dlopen: no such file"), std::string::npos) << text;

  r = reg.handle({{"cmd", "services"}});
  ASSERT_TRUE(r["ok"].get<bool>());
  ASSERT_EQ(r["services"].size(), 1u);
  EXPECT_NE(ctl::format_reply("services", r).find("1/2"), std::string::npos) << ctl::format_reply("services", r);

  r = reg.handle({{"cmd", "undeploy"}, {"service", "nope"}});
  EXPECT_FALSE(r["ok"].get<bool>());
  r = reg.handle({{"cmd", "undeploy"}, {"service", "test-svc"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_TRUE(r["undeploy_ms"].is_number()) << r.dump();
  EXPECT_EQ(ctl::format_reply("undeploy", r), "undeployed test-svc\n");
  EXPECT_EQ(ctl::format_reply("services", reg.handle({{"cmd", "services"}})), "no services deployed\n");
  std::filesystem::remove(path);
}

TEST(GearsctlDeploy, ArgumentsBecomeOneRequest) {
  auto inv = ctl::parse_args({"deploy", "some/dir/../x.gears", "--exe", "c*", "--timeout", "2000"});
  ASSERT_TRUE(inv) << inv.error().what();
  const std::string bundle = inv->request["bundle"];
  EXPECT_EQ(bundle, (std::filesystem::current_path() / "some/x.gears").string());
  EXPECT_EQ(inv->request["exe"], "c*");
  EXPECT_EQ(inv->request["timeout_ms"], 2000);
  EXPECT_EQ(inv->timeout_ms, 4 * 2000 + 5000);  // the client waits for the guest work
  inv = ctl::parse_args({"--timeout", "3", "deploy", "/x.gears", "--pid", "7"});
  ASSERT_TRUE(inv);
  EXPECT_EQ(inv->request["pid"], 7);
  EXPECT_EQ(inv->timeout_ms, 3000);  // an explicit client timeout stays
  EXPECT_FALSE(ctl::parse_args({"deploy"}));
  EXPECT_FALSE(ctl::parse_args({"deploy", "/x.gears", "--pid", "7", "--exe", "cat"}));
  EXPECT_FALSE(ctl::parse_args({"deploy", "/x.gears", "--pid", "-1"}));
  EXPECT_FALSE(ctl::parse_args({"deploy", "/x.gears", "/y.gears"}));
  EXPECT_FALSE(ctl::parse_args({"deploy", "/x.gears", "--bogus"}));
  inv = ctl::parse_args({"undeploy", "file-audit"});
  ASSERT_TRUE(inv);
  EXPECT_EQ(inv->request, (Json{{"cmd", "undeploy"}, {"service", "file-audit"}}));
  EXPECT_FALSE(ctl::parse_args({"undeploy"}));
  inv = ctl::parse_args({"services"});
  ASSERT_TRUE(inv);
  EXPECT_EQ(inv->request, (Json{{"cmd", "services"}}));
}

// ---------------------------------------------------------------------------------------------
// The real sample: gearsc's file-audit bundle, its VMM half dlopen()ed from a memfd.

// A sample's bundle in this build tree ("" when not built):
// <build>/tests/unit/vmm_deploy_test -> <build>/samples/<relative>
std::string built_sample(const std::string& relative) {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  const auto path = exe.parent_path().parent_path().parent_path() / "samples" / relative;
  return std::filesystem::exists(path) ? path.string() : std::string();
}

std::string sample_bundle() {
  if (const char* env = std::getenv("GEARS_SAMPLE_BUNDLE")) return env;
  return built_sample("file_audit/file-audit.gears");
}

// The release a bundle's kernel half was built for: the first word of its vermagic ("" when
// the bundle or its kernel half cannot be read).
std::string kernel_half_release(const std::string& path) {
  auto image = bundle::read_file(path);
  if (!image) return "";
  auto entries = bundle::read(*image);
  if (!entries) return "";
  const bundle::Entry* ko = bundle::find(*entries, GEARS_BUNDLE_KERNEL_HALF);
  if (!ko) return "";
  auto elf = ElfImage::parse(ko->data);
  if (!elf) return "";
  auto vermagic = elf->modinfo("vermagic");
  return vermagic ? vermagic->substr(0, vermagic->find(' ')) : "";
}

TEST_F(DeployTest, RealFileAuditBundle) {
  const std::string path = sample_bundle();
  if (path.empty() || !std::filesystem::exists(path))
    GTEST_SKIP() << "no file-audit.gears (build the samples or set GEARS_SAMPLE_BUNDLE)";
  // The guest runs whatever kernel the build fetched: take its release from the bundle's own
  // kernel half (the build compiled it against that kernel's headers).
  const std::string release = kernel_half_release(path);
  ASSERT_FALSE(release.empty());
  auto cfg = config();
  cfg.guest_release = release;
  cfg.open_plugin = PluginLibrary::open;
  ServiceManager mgr(cfg);
  auto st = mgr.deploy_file(path, {});
  ASSERT_TRUE(st) << st.error().what();
  EXPECT_EQ((*st)["service"], "file-audit");
  EXPECT_EQ((*st)["kernel"]["module"], "gears_file_audit");
  EXPECT_EQ((*st)["vmm"]["hypercalls"], Json::array({"0xf6430001", "0xf6430002"}));
  EXPECT_EQ((*st)["log"], Json::array({"started"}));
  EXPECT_EQ(inj.calls[3], "load_library:exe=sh:/run/gears-file-audit.user.so");

  // report_kernel_opens(count) from the guest kernel: handled by the plugin's code.
  VcpuRegs regs{};
  regs.rax = 0xf6430002;
  regs.rdi = 5;
  auto r = dispatcher.dispatch(Origin::guest_kernel, 0, regs, mem);
  EXPECT_TRUE(r.handled);
  EXPECT_EQ(r.result, 0);
  // report_open with a wrong size is refused by the generated dispatcher (-EINVAL).
  regs = VcpuRegs{};
  regs.rdi = 0xf6430001;
  regs.rsi = 0x1000;
  regs.rdx = 1;
  r = dispatcher.dispatch(Origin::guest_user, 0, regs, mem);
  EXPECT_TRUE(r.handled);
  EXPECT_EQ(r.result, -EINVAL);
  EXPECT_EQ(mgr.services()["services"][0]["vmm"]["calls"], 2);

  ASSERT_TRUE(mgr.undeploy("file-audit"));
  regs.rax = 0xf6430002;
  EXPECT_FALSE(dispatcher.dispatch(Origin::guest_kernel, 0, regs, mem).handled);
  // Deploying again loads a fresh copy (PluginLibraryTest.EveryOpenLoadsItsOwnCopy).
  EXPECT_TRUE(mgr.deploy_file(path, {}));

  // The wrong guest kernel: refused before anything is loaded.
  // (As on a machine whose headers are another point release than the guest kernel.)
  cfg.guest_release = release + "-other";
  ServiceManager other(cfg);
  auto bad = other.deploy_file(path, {});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().what().find("built for kernel " + release + ", the guest runs " + release + "-other"),
            std::string::npos)
      << bad.error().what();
}

// A VM group for a VMM half: this VM is member 3, alone (reads of other members' RAM fail).
class FakeVmGroup final : public VmGroup {
 public:
  std::vector<uint8_t> area = std::vector<uint8_t>(2 << 20);
  uint32_t self() const override { return 3; }
  std::span<uint8_t> vmm_area() override { return area; }
  Expected<void> read_member_ram(uint32_t member, uint64_t, std::span<uint8_t>) override {
    return fail("no member " + std::to_string(member));
  }
};
// The MPI accelerator's table: one slice per member (samples/mpi_accel/btl/gears_mpi_rdma.h).
constexpr size_t mpi_rdma_slice_bytes = 2048 * 32;

// The MPI accelerator's VMM half refuses a VM without its shared region and starts with one
// (ServiceHost::shared_region, fed by the ManagerConfig's lookup: gears-vmm's --shm regions).
TEST_F(DeployTest, RealMpiAccelBundleNeedsItsRegion) {
  const std::string path = built_sample("mpi_accel/mpi-accel.gears");
  if (path.empty()) GTEST_SKIP() << "no mpi-accel.gears (build the samples)";
  auto cfg = config();
  cfg.guest_release = kernel_half_release(path);
  cfg.open_plugin = PluginLibrary::open;
  {
    ServiceManager mgr(cfg);
    auto refused = mgr.deploy_file(path, {});
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().what().find("refused the service"), std::string::npos) << refused.error().what();
    EXPECT_TRUE(inj.calls.empty());  // nothing reached the guest
  }
  std::vector<uint8_t> region(4 << 20);
  cfg.resources.shared_regions = [&region](std::string_view name) -> Expected<std::span<uint8_t>> {
    if (name != "mpi") return fail("no region " + std::string(name));
    return std::span<uint8_t>(region);
  };
  // The VM group: a VMM area of its own and no other member (reads of member RAM fail).
  FakeVmGroup group;
  cfg.resources.vm_groups = [&group](std::string_view name) -> Expected<VmGroup*> {
    if (name != "mpi") return fail("no group " + std::string(name));
    return static_cast<VmGroup*>(&group);
  };
  cfg.resources.guest_physical = [this](uint64_t gpa, uint64_t len) { return mem.span(gpa, len); };
  ServiceManager mgr(cfg);
  auto st = mgr.deploy_file(path, {});
  ASSERT_TRUE(st) << st.error().what();
  EXPECT_EQ((*st)["log"], Json::array({"started: region mpi is 4 MiB", "one-copy path on: this VM is member 3 of the group"}));
  EXPECT_EQ((*st)["kernel"]["module"], "gears_mpi_accel");
  // A hostile guest calling every function of the VMM half with garbage (results, addresses,
  // sizes, keys, cookies), from its kernel and from a process: answered (an error or 0), the
  // region never written, nothing in the group's area but this VM's own slice.
  const uint16_t id = (*st)["id"].get<uint16_t>();
  for (Origin origin : {Origin::guest_kernel, Origin::guest_user}) {
    for (uint16_t fn = 1; fn <= 5; ++fn) {
      for (uint64_t junk : {0ULL, ~0ULL, 0x8000'0000'0000'0000ULL, 4096ULL, 0x3'0000'0001ULL}) {
        VcpuRegs regs{};
        regs.rax = GEARS_HC_MAKE(id, fn);
        regs.rdi = junk;
        regs.rsi = ~junk;
        regs.r10 = junk * 3;
        regs.r8 = junk >> 1;
        regs.r9 = junk + 1;
        auto r = dispatcher.dispatch(origin, 0, regs, mem);
        if (origin == Origin::guest_user) {  // the kernel half's calls: not for a process
          EXPECT_TRUE(!r.handled || r.result < 0) << fn;
        } else if (fn == 1) {
          EXPECT_TRUE(r.handled);
          EXPECT_EQ(r.result, 3);  // rdma_member
        } else {
          EXPECT_TRUE(r.handled) << fn;
          EXPECT_LE(r.result, 0) << "function " << fn << " junk " << junk;
        }
      }
    }
  }
  VcpuRegs regs{};
  regs.rax = GEARS_HC_MAKE(id, 77);
  EXPECT_FALSE(dispatcher.dispatch(Origin::guest_kernel, 0, regs, mem).handled);
  for (size_t i = 0; i < group.area.size(); ++i) {
    if (group.area[i] != 0) {
      ASSERT_EQ(i / mpi_rdma_slice_bytes, 3u) << "byte " << i << " written";
    }
  }
  EXPECT_EQ(region[0], 0);  // the region is the guests' business, never written by the VMM half
  EXPECT_TRUE(mgr.undeploy("mpi-accel"));
}

// A NIC view for the overlay accelerator's VMM half: records what reaches the host path (in
// the test's own variables: the view dies with the service).
class FakeOverlayNic final : public OverlayNic {
 public:
  FakeOverlayNic(std::atomic<int>& sent, std::atomic<bool>& tapped) : sent_(sent), tapped_(tapped) {}
  OverlayNicInfo info() const override { return {"net0", {0x52, 0x54, 0, 0, 0, 1}, 1, 1500, true}; }
  uint64_t routes_generation() const override { return 1; }
  std::vector<Mac> remote_macs(size_t) const override { return {}; }
  OverlaySend send_encapsulated(std::span<const uint8_t>) override {
    ++sent_;
    return OverlaySend::dropped;
  }
  OverlaySend send_frame(std::span<const uint8_t>, const OverlayOffload&) override {
    ++sent_;
    return OverlaySend::dropped;
  }
  void flush() override {}
  void set_rx_tap(OverlayRxTap t) override { tapped_ = static_cast<bool>(t); }

 private:
  std::atomic<int>& sent_;
  std::atomic<bool>& tapped_;
};

// The overlay accelerator's VMM half against a hostile guest kernel: its hypercalls with
// addresses outside RAM, ranges that wrap, an area of another layout, a second attach, calls
// out of order. Each is refused or harmless; the service keeps working and undeploys cleanly.
TEST_F(DeployTest, RealOverlayAccelBundleSurvivesAHostileGuest) {
  const std::string path = built_sample("overlay_accel/overlay-accel.gears");
  if (path.empty()) GTEST_SKIP() << "no overlay-accel.gears (build the samples)";
  auto cfg = config();
  cfg.guest_release = kernel_half_release(path);
  cfg.open_plugin = PluginLibrary::open;
  constexpr uint64_t kBase = 0x100000;
  std::vector<uint8_t> ram(2 << 20);
  cfg.resources.guest_physical = [&ram](uint64_t gpa, uint64_t len) -> Expected<std::span<uint8_t>> {
    if (gpa < kBase || len > ram.size() || gpa - kBase > ram.size() - len) return fail("not RAM");
    return std::span<uint8_t>(ram).subspan(gpa - kBase, len);
  };
  std::atomic<int> sent{0};
  std::atomic<bool> tapped{false};
  cfg.resources.overlay_nics = [&](size_t i) -> Expected<std::unique_ptr<OverlayNic>> {
    if (i != 0) return fail("no NIC");
    return std::unique_ptr<OverlayNic>(std::make_unique<FakeOverlayNic>(sent, tapped));
  };
  ServiceManager mgr(cfg);
  auto st = mgr.deploy_file(path, {});
  ASSERT_TRUE(st) << st.error().what();
  EXPECT_TRUE(tapped);
  // No patch points, no install path: its (empty) user half is not written into the guest.
  EXPECT_EQ((*st)["user"]["state"], "unused");
  EXPECT_EQ(inj.calls, std::vector<std::string>{"load_module"});
  const uint16_t id = (*st)["id"].get<uint16_t>();
  auto call = [&](uint32_t fn, uint64_t a0 = 0, uint64_t a1 = 0) {
    VcpuRegs regs{};
    regs.rax = GEARS_HC_MAKE(id, fn);
    regs.rdi = a0;
    regs.rsi = a1;
    auto r = dispatcher.dispatch(Origin::guest_kernel, 0, regs, mem);
    EXPECT_TRUE(r.handled) << fn;
    return r.result;
  };
  enum { kAttach = 1, kDetach, kKick, kRxIdle };
  EXPECT_EQ(call(kAttach, 0xdead'0000'0000ULL, 1 << 20), -EFAULT);  // not RAM
  EXPECT_EQ(call(kAttach, ~0ULL - 4095, 8192), -EFAULT);            // wraps
  EXPECT_EQ(call(kAttach, kBase, ~0ULL), -EFAULT);                  // longer than RAM
  EXPECT_EQ(call(kAttach, kBase, 1 << 20), -EINVAL);                // zeros: not an area
  // Out of order: nothing attached.
  EXPECT_EQ(call(kKick), 0);
  EXPECT_EQ(call(kRxIdle), 0);
  EXPECT_EQ(call(kDetach), 0);
  // A well-formed area, then a second attach, then a ring index far ahead.
  auto* c = reinterpret_cast<ovl_ctrl*>(ram.data());
  c->magic = OVL_MAGIC;
  c->area_size = OVL_AREA_SIZE;
  c->tx_slots = OVL_TX_SLOTS;
  c->rx_slots = OVL_RX_SLOTS;
  EXPECT_EQ(call(kAttach, kBase, c->area_size), 0);
  EXPECT_EQ(call(kAttach, kBase, c->area_size), -EBUSY);
  reinterpret_cast<ovl_rings*>(ram.data() + OVL_RINGS_OFF)->tx.prod = 1'000'000;
  EXPECT_EQ(call(kKick, 1), 0);  // the ring is "full": drain on this vCPU
  EXPECT_EQ(sent, 0);  // nothing read from a ring that claims more than it holds
  EXPECT_EQ(call(kDetach), 0);
  auto services = mgr.services()["services"][0]["vmm"]["counters"];
  EXPECT_EQ(services["tx_bad_index"], 1);
  EXPECT_EQ(services["attaches"], 1);
  ASSERT_TRUE(mgr.undeploy("overlay-accel"));
  EXPECT_FALSE(tapped);  // gears-vmm took the plugin's tap out before unloading it
}

// Two opens of a VMM half load two copies, also when the first is still loaded (or, as glibc
// does for objects with STB_GNU_UNIQUE symbols, never unloaded): glibc must not hand back the
// first copy because the new memfd got the same fd number, i.e. the same "/proc/self/fd/N".
TEST(PluginLibraryTest, EveryOpenLoadsItsOwnCopy) {
  const std::string path = sample_bundle();
  if (path.empty() || !std::filesystem::exists(path))
    GTEST_SKIP() << "no file-audit.gears (build the samples or set GEARS_SAMPLE_BUNDLE)";
  auto image = bundle::read_file(path);
  ASSERT_TRUE(image) << image.error().what();
  auto entries = bundle::read(*image);
  ASSERT_TRUE(entries) << entries.error().what();
  const bundle::Entry* vmm = bundle::find(*entries, GEARS_BUNDLE_VMM_HALF);
  ASSERT_NE(vmm, nullptr);
  auto first = PluginLibrary::open(vmm->data, "file-audit");
  ASSERT_TRUE(first) << first.error().what();
  auto second = PluginLibrary::open(vmm->data, "file-audit");
  ASSERT_TRUE(second) << second.error().what();
  EXPECT_NE(&(*first)->descriptor(), &(*second)->descriptor());
  // Closed again (the copy may be unmapped, and a new one may land at its address), then opened:
  // still not the first copy.
  second->reset();
  auto third = PluginLibrary::open(vmm->data, "file-audit");
  ASSERT_TRUE(third) << third.error().what();
  EXPECT_NE(&(*third)->descriptor(), &(*first)->descriptor());
}

}  // namespace

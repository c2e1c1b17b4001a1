/* gears ABI: the service manifest schema (JSON, UTF-8), written by gearsc, packed in the bundle
 * and embedded in the guest-user half (ELF section GEARS_MANIFEST_SECTION).
 *
 * {
 *   "schema": GEARS_MANIFEST_SCHEMA,            integer
 *   "service": {"name": "...", "version": "...", "id": <16-bit service id>},
 *   "hypercalls": [ {"name": "report_open", "number": <u32>, "from": "guest_user"|"guest_kernel",
 *                    "args": [ {"name": "ev", "kind": "scalar"|"buffer", "size": <bytes>} ],
 *                    "result": "scalar"|"void"} ],
 *   "patch_points": [ {"kind": "interpose", "library": "libc.so.6", "symbol": "open",
 *                      "handler": "audited_open", "programs": ["cat", ...]},
 *                     {"kind": "kernel_hook", "hook": "do_sys_openat2", "handler": "on_open"} ],
 *   "halves": {"vmm": "<file>", "guest_user": "<file>", "guest_kernel": "<file>"},
 *   "user_half": {"install": "/abs/path"},      optional (GEARS_USER_HALF_INSTALL): where deploy
 *                                                writes the user half in the guest
 *   "exports": {"vmm": ["gears_service_plugin_v1"],
 *               "guest_user": ["open", ..., "gears_user_attach_v1", "gears_user_detach_v1"]},
 *   "required_guest_symbols": {"guest_user": ["dlsym", ...], "guest_kernel": ["register_kprobe", ...]}
 * }
 * Readers ignore keys they do not know; a schema number they do not know is an error.
 * In the user half the section is loaded and NUL-padded to a page: the JSON ends at the first NUL. */
#ifndef GEARS_ABI_MANIFEST_H
#define GEARS_ABI_MANIFEST_H

#define GEARS_MANIFEST_SCHEMA 1
#define GEARS_MANIFEST_SECTION ".gears.manifest"
#define GEARS_PLUGIN_ENTRY "gears_service_plugin_v1"
/* The user half's linking entry points, `int fn(void)` returning 0 or -errno: called after the
 * half is dlopen()ed into a running process, and before it is dlclose()d (gears/user_link.h). */
#define GEARS_USER_ATTACH_ENTRY "gears_user_attach_v1"
#define GEARS_USER_DETACH_ENTRY "gears_user_detach_v1"

#endif /* GEARS_ABI_MANIFEST_H */

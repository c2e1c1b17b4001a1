# gears_add_service(NAME <service name> SOURCES <service.cpp> [INCLUDE_DIRECTORIES dir...]
#                   [KERNEL_SYMBOLS <System.map>]
#                   [USER_SOURCES src...] [USER_INCLUDE_DIRECTORIES dir...]
#                   [USER_LINK_LIBRARIES lib...]
#                   [KERNEL_SOURCES src.c...] [KERNEL_INCLUDE_DIRECTORIES dir...])
#
# Runs gearsc on the service source and builds every half:
#   <target>_vmm   the VMM half, a plugin gears-vmm loads          (<mod>.vmm.so)
#   <target>_user  the guest-user half, a preloadable library      (<mod>.user.so)
#   <mod>.ko       the guest-kernel half, kbuild against the guest kernel's headers with gcc-12
#   <NAME>.gears   the bundle (manifest + the three halves), target <target> (built by ALL)
# where <target> is NAME with non-identifier characters replaced by '_' and <mod> = gears_<target>.
# The bundle path is in the target property GEARS_BUNDLE.
# USER_*: more code for the guest-user half only (plain C or C++ sources that are not split,
# e.g. a plugin for a guest program written against that program's C headers), its include
# directories and libraries. They are compiled with hidden visibility like the generated half:
# mark what the guest program must find with a visibility("default") attribute.
# KERNEL_*: C sources built into the guest-kernel half's module with kbuild (code that needs
# Linux's own headers: a netdev hook, say), called from the half through extern "C"
# declarations in the service source; and their include directories.
#
# Needs: targets gears::gearsc and gears::pack (in-tree or from find_package(Gears)), gcc-12,
# and the guest kernel headers: GEARS_GUEST_KERNEL_HEADERS, found from Debian's
# linux-headers-amd64 when unset.
include_guard(GLOBAL)

function(_gears_find_kernel_headers out)
  if(GEARS_GUEST_KERNEL_HEADERS)
    set(${out} "${GEARS_GUEST_KERNEL_HEADERS}" PARENT_SCOPE)
    return()
  endif()
  # Follow the linux-headers-amd64 dependency rather than hard-coding the ABI number.
  execute_process(COMMAND dpkg-query -W -f=\${Depends} linux-headers-amd64
    OUTPUT_VARIABLE deps ERROR_QUIET RESULT_VARIABLE rc)
  set(dir "")
  if(rc EQUAL 0 AND deps MATCHES "(linux-headers-[0-9][^ ,]*-amd64)")
    set(dir "/usr/src/${CMAKE_MATCH_1}")
  endif()
  if(NOT dir OR NOT EXISTS "${dir}/Makefile")
    file(GLOB candidates LIST_DIRECTORIES true "/usr/src/linux-headers-*-amd64")
    list(SORT candidates COMPARE NATURAL ORDER DESCENDING)
    list(GET candidates 0 dir)
  endif()
  if(NOT dir OR NOT EXISTS "${dir}/Makefile")
    message(FATAL_ERROR "gears_add_service: the guest kernel headers are missing; install "
      "linux-headers-amd64 (tools/setup-deps) or set GEARS_GUEST_KERNEL_HEADERS")
  endif()
  set(GEARS_GUEST_KERNEL_HEADERS "${dir}" CACHE PATH "Guest kernel headers (kbuild tree) for kernel halves")
  set(${out} "${dir}" PARENT_SCOPE)
endfunction()

function(gears_add_service)
  cmake_parse_arguments(ARG "" "NAME;KERNEL_SYMBOLS"
    "SOURCES;INCLUDE_DIRECTORIES;USER_SOURCES;USER_INCLUDE_DIRECTORIES;USER_LINK_LIBRARIES;KERNEL_SOURCES;KERNEL_INCLUDE_DIRECTORIES" ${ARGN})
  if(NOT ARG_NAME OR NOT ARG_SOURCES)
    message(FATAL_ERROR "gears_add_service: NAME and SOURCES are required")
  endif()
  list(LENGTH ARG_SOURCES nsrc)
  if(NOT nsrc EQUAL 1)
    message(FATAL_ERROR "gears_add_service(${ARG_NAME}): one annotated service source, got ${nsrc}")
  endif()
  string(MAKE_C_IDENTIFIER "${ARG_NAME}" target)
  set(mod "gears_${target}")
  get_filename_component(src "${ARG_SOURCES}" ABSOLUTE)
  set(gen "${CMAKE_CURRENT_BINARY_DIR}/${target}.gears.d")
  find_program(GEARS_GCC12 gcc-12 REQUIRED)
  find_program(GEARS_GXX12 g++-12 REQUIRED)
  _gears_find_kernel_headers(kheaders)

  set(inc_args "-I${GEARS_SDK_INCLUDE_DIR}")
  foreach(dir IN LISTS ARG_INCLUDE_DIRECTORIES)
    get_filename_component(dir "${dir}" ABSOLUTE)
    list(APPEND inc_args "-I${dir}")
  endforeach()
  set(sym_args "")
  if(ARG_KERNEL_SYMBOLS)
    set(sym_args "--kernel-symbols=${ARG_KERNEL_SYMBOLS}")
  endif()

  # Tools: in-tree targets or the ones find_package(Gears) imported.
  set(gearsc "$<TARGET_FILE:gears::gearsc>")
  set(pack "$<TARGET_FILE:gears::pack>")

  # 1. gearsc: the halves' sources and the manifest.
  set(kgen "${gen}/kernel")
  set(outputs "${gen}/${mod}.vmm.cpp" "${gen}/${mod}.user.cpp" "${gen}/${mod}.manifest.json"
    "${kgen}/${mod}_half.cpp" "${kgen}/${mod}_glue.c" "${kgen}/gears_kernel_runtime.c" "${kgen}/Kbuild")
  add_custom_command(OUTPUT ${outputs}
    COMMAND ${gearsc} -o "${gen}" --service-name=${ARG_NAME} ${sym_args} "${src}" -- -std=c++20 ${inc_args}
    DEPENDS "${src}" ${gearsc}
    COMMENT "gearsc: splitting service ${ARG_NAME}"
    VERBATIM)

  # 2. The VMM half: a plugin (dlopen'ed by gears-vmm), only the entry point exported.
  add_library(${target}_vmm MODULE "${gen}/${mod}.vmm.cpp")
  target_link_libraries(${target}_vmm PRIVATE gears::sdk)
  target_include_directories(${target}_vmm PRIVATE ${ARG_INCLUDE_DIRECTORIES})
  set_target_properties(${target}_vmm PROPERTIES PREFIX "" OUTPUT_NAME "${mod}.vmm"
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  # g++ marks some inline/template statics STB_GNU_UNIQUE, which makes glibc refuse to ever
  # unload the object: an undeployed VMM half would stay mapped (doc/deploy.md, Limits).
  target_compile_options(${target}_vmm PRIVATE $<$<CXX_COMPILER_ID:GNU>:-fno-gnu-unique>)

  # 3. The guest-user half: preloaded into guest processes; exports the interposed symbols
  #    only and carries its C++ runtime so the guest needs nothing but libc.
  add_library(${target}_user SHARED "${gen}/${mod}.user.cpp" ${ARG_USER_SOURCES})
  target_link_libraries(${target}_user PRIVATE gears::sdk ${CMAKE_DL_LIBS} ${ARG_USER_LINK_LIBRARIES}
    -static-libstdc++ -static-libgcc -Wl,--exclude-libs,ALL)
  target_include_directories(${target}_user PRIVATE ${ARG_INCLUDE_DIRECTORIES} ${ARG_USER_INCLUDE_DIRECTORIES})
  set_target_properties(${target}_user PROPERTIES PREFIX "" OUTPUT_NAME "${mod}.user"
    C_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)

  # 4. The guest-kernel half: kbuild against the guest kernel's headers, gcc-12 exactly. The
  #    service's own kernel C sources are copied next to the generated ones (kbuild builds
  #    one directory).
  set(kobjs "")
  set(kcopies "")
  set(kcflags "")
  foreach(ksrc IN LISTS ARG_KERNEL_SOURCES)
    get_filename_component(ksrc "${ksrc}" ABSOLUTE)
    get_filename_component(kname "${ksrc}" NAME_WE)
    get_filename_component(kdir "${ksrc}" DIRECTORY)
    if(kname MATCHES "^(gears_|${mod})")
      message(FATAL_ERROR "gears_add_service(${ARG_NAME}): kernel source ${ksrc}: names starting gears_ are gearsc's")
    endif()
    add_custom_command(OUTPUT "${kgen}/${kname}.c"
      COMMAND ${CMAKE_COMMAND} -E copy_if_different "${ksrc}" "${kgen}/${kname}.c"
      DEPENDS "${ksrc}" ${outputs} VERBATIM)
    list(APPEND kcopies "${kgen}/${kname}.c")
    list(APPEND kobjs "${kname}.o")
    list(APPEND kcflags "-I${kdir}")
    # kbuild tracks headers itself, but only runs when a DEPENDS changed: the sources' headers.
    file(GLOB khdrs CONFIGURE_DEPENDS "${kdir}/*.h")
    list(APPEND kcopies ${khdrs})
  endforeach()
  foreach(dir IN LISTS ARG_KERNEL_INCLUDE_DIRECTORIES)
    get_filename_component(dir "${dir}" ABSOLUTE)
    list(APPEND kcflags "-I${dir}")
  endforeach()
  list(REMOVE_DUPLICATES kcflags)
  list(JOIN kobjs " " kobjs)
  list(JOIN kcflags " " kcflags)
  set(ko "${kgen}/${mod}.ko")
  add_custom_command(OUTPUT "${ko}"
    COMMAND make -s -C "${kheaders}" M=${kgen} CC=${GEARS_GCC12} GEARS_CXX=${GEARS_GXX12}
            GEARS_SDK_INCLUDE=${GEARS_SDK_INCLUDE_DIR} "GEARS_KERNEL_OBJECTS=${kobjs}"
            "GEARS_KERNEL_CFLAGS=${kcflags}" modules
    DEPENDS ${outputs} ${kcopies}
    COMMENT "kbuild: guest-kernel half of ${ARG_NAME} against ${kheaders}"
    VERBATIM)

  # 5. The bundle.
  set(bundle "${CMAKE_CURRENT_BINARY_DIR}/${ARG_NAME}.gears")
  add_custom_command(OUTPUT "${bundle}"
    COMMAND ${pack} -m "${gen}/${mod}.manifest.json" --vmm $<TARGET_FILE:${target}_vmm>
            --user $<TARGET_FILE:${target}_user> --kernel "${ko}" -o "${bundle}"
    DEPENDS "${gen}/${mod}.manifest.json" ${target}_vmm ${target}_user "${ko}" ${pack}
    COMMENT "gears-pack: bundle ${ARG_NAME}.gears"
    VERBATIM)
  add_custom_target(${target} ALL DEPENDS "${bundle}")
  set_target_properties(${target} PROPERTIES GEARS_BUNDLE "${bundle}" GEARS_GENERATED_DIR "${gen}")
endfunction()

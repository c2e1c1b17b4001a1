# cmake -DIN=file -DOUT=header.h -DNAME=kSymbol -P embed_text.cmake
# Writes `inline constexpr char NAME[] = R"...(<contents of IN>)...";` into OUT (only when the
# text changed), so gearsc carries a file of the SDK (the guest-kernel runtime) in its binary.
file(READ "${IN}" text)
string(FIND "${text}" ")gears_embed\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "embed_text: ${IN} contains the raw-string delimiter")
endif()
set(body "// Generated from ${IN} by compiler/cmake/embed_text.cmake. Do not edit.\n#pragma once\n\nnamespace gears::compiler {\ninline constexpr char ${NAME}[] = R\"gears_embed(${text})gears_embed\";\n}  // namespace gears::compiler\n")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
  if(old STREQUAL body)
    return()
  endif()
endif()
file(WRITE "${OUT}" "${body}")

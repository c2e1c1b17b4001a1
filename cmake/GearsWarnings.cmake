# gears_warnings(target): the project's warning set on one target.
# A function, not global flags, so third-party code (gtest, LLVM headers) never meets -Werror.
function(gears_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
    -Wnon-virtual-dtor -Wcast-align -Woverloaded-virtual -Wformat=2 -Wimplicit-fallthrough)
  if(GEARS_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

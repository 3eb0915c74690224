# FLOVER_FUZZ=ON: the libFuzzer harnesses of tests/fuzz (docs/fuzzing.md). Needs clang
# (-DCMAKE_CXX_COMPILER=clang++-14; scripts/fuzz.sh configures it so). Every C/C++
# target gets coverage instrumentation for libFuzzer (-fsanitize=fuzzer-no-link) and, as
# with FLOVER_SANITIZE, AddressSanitizer and UndefinedBehaviorSanitizer (the default of
# FLOVER_SANITIZE in such a build; findings abort). The harnesses link libFuzzer's main
# (-fsanitize=fuzzer). Such a build has no CUDA backend. Build only the `flover_fuzz`
# target there: the harnesses, their seed writer and the few libraries they use.
option(FLOVER_FUZZ "Build the libFuzzer harnesses (clang only; implies FLOVER_SANITIZE=address,undefined)" OFF)

if(FLOVER_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang" OR NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "FLOVER_FUZZ needs clang for C and C++ (libFuzzer): configure with "
                        "-DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 (scripts/fuzz.sh does)")
  endif()
  if(NOT FLOVER_SANITIZE)
    set(FLOVER_SANITIZE "address,undefined")
  endif()
  add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:-fsanitize=fuzzer-no-link>")
  message(STATUS "Flover: libFuzzer harnesses (tests/fuzz)")
endif()

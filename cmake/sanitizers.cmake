# FLOVER_SANITIZE: sanitizers compiled into every C/C++ target, a comma list of
# address, undefined, leak and thread (e.g. -DFLOVER_SANITIZE=address,undefined or
# -DFLOVER_SANITIZE=thread; thread does not combine with address or leak). UBSan
# findings abort (-fno-sanitize-recover), so a test that meets one fails. nvcc cannot
# build sanitized host code, so a sanitizer build has no CUDA backend: FLOVER_CUDA=AUTO
# becomes OFF, and ON is an error. scripts/test-sanitizers.sh runs the tests this way.
set(FLOVER_SANITIZE "" CACHE STRING
    "Sanitizers for every target: a comma list of address, undefined, leak, thread (empty: none)")

set(FLOVER_SANITIZERS "")
if(FLOVER_SANITIZE)
  string(REPLACE "," ";" _flover_sanitizers "${FLOVER_SANITIZE}")
  foreach(_s IN LISTS _flover_sanitizers)
    string(STRIP "${_s}" _s)
    if(NOT _s MATCHES "^(address|undefined|leak|thread)$")
      message(FATAL_ERROR "FLOVER_SANITIZE: '${_s}' is not one of address, undefined, leak, thread")
    endif()
    list(APPEND FLOVER_SANITIZERS "${_s}")
  endforeach()
  list(REMOVE_DUPLICATES FLOVER_SANITIZERS)
  if("thread" IN_LIST FLOVER_SANITIZERS AND ("address" IN_LIST FLOVER_SANITIZERS OR "leak" IN_LIST FLOVER_SANITIZERS))
    message(FATAL_ERROR "FLOVER_SANITIZE: thread cannot be combined with address or leak")
  endif()

  string(TOUPPER "${FLOVER_CUDA}" _flover_cuda)
  if(_flover_cuda STREQUAL "ON")
    message(FATAL_ERROR "FLOVER_SANITIZE needs FLOVER_CUDA=OFF (nvcc cannot build sanitized code)")
  endif()
  set(FLOVER_CUDA OFF)  # this configure only: the cache keeps the user's choice

  list(JOIN FLOVER_SANITIZERS "," _flover_joined)
  set(_flover_flags "-fsanitize=${_flover_joined}" -fno-omit-frame-pointer)
  if("undefined" IN_LIST FLOVER_SANITIZERS)
    list(APPEND _flover_flags -fno-sanitize-recover=undefined)
  endif()
  foreach(_flag IN LISTS _flover_flags)
    add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:${_flag}>")
  endforeach()
  add_link_options("-fsanitize=${_flover_joined}")
  # For code that must know (GCC says __SANITIZE_ADDRESS__, clang 14 only __has_feature).
  if("address" IN_LIST FLOVER_SANITIZERS)
    add_compile_definitions(FLOVER_SANITIZE_ADDRESS=1)
  endif()
  message(STATUS "Flover: sanitizers ${_flover_joined} (CUDA off)")
endif()

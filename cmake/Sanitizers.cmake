# LOOP_SANITIZE=address,undefined | thread: instruments the project's own code (library, loopctl,
# examples, tests). Third-party code is header-only (asio, json, CLI11, Catch2) so it is
# instrumented too; OpenSSL and libstdc++ are not, which ASan/UBSan handle and TSan tolerates
# (their internal locking is invisible to it but none of our data crosses threads through them).
set(LOOP_SANITIZE "" CACHE STRING "Sanitizers for the project's code: address,undefined or thread")
if(LOOP_SANITIZE)
  if(LOOP_SANITIZE MATCHES "thread" AND LOOP_SANITIZE MATCHES "address")
    message(FATAL_ERROR "LOOP_SANITIZE: thread cannot be combined with address")
  endif()
  # -fno-sanitize-recover: every UBSan report aborts, so a test that triggers one fails even
  # when UBSAN_OPTIONS is not set. Frame pointers keep the reports' stacks readable.
  set(LOOP_SANITIZE_FLAGS -fsanitize=${LOOP_SANITIZE} -fno-sanitize-recover=all
                          -fno-omit-frame-pointer)
  add_compile_options(${LOOP_SANITIZE_FLAGS})
  add_link_options(-fsanitize=${LOOP_SANITIZE})
  message(STATUS "libloop: sanitizers ${LOOP_SANITIZE}")
endif()

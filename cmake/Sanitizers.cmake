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
  # clang 14: -fsanitize=function (part of "undefined") puts prologue data on functions, which
  # fails on coroutine frames ("Cannot represent a difference across sections", sock_ops.cpp).
  # It only checks calls through mistyped function pointers, which C++ code hardly has.
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang" AND LOOP_SANITIZE MATCHES "undefined")
    list(APPEND LOOP_SANITIZE_FLAGS -fno-sanitize=function)
  endif()
  # GCC warns (-Wtsan) that TSan does not model std::atomic_thread_fence, which asio's
  # std_fenced_block uses around handler calls. The ordering TSan needs there comes from the
  # io_context's mutex around its queue, which it does see; a miss would show as a report.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND LOOP_SANITIZE MATCHES "thread")
    list(APPEND LOOP_SANITIZE_FLAGS -Wno-tsan)
  endif()
  # -fno-sanitize=vptr: a false positive when no descriptor is free (test_fault_emfile,
  # test_server's "out of file descriptors" lower RLIMIT_NOFILE on purpose). To check a vptr the
  # UBSan runtime probes that the vtable is readable by writing it to a pipe; pipe() fails with
  # EMFILE, and it reports "invalid vptr" on a shared_ptr control block that is fine. ASan still
  # checks every access to those objects.
  if(LOOP_SANITIZE MATCHES "undefined")
    list(APPEND LOOP_SANITIZE_FLAGS -fno-sanitize=vptr)
  endif()
  add_compile_options(${LOOP_SANITIZE_FLAGS})
  add_link_options(-fsanitize=${LOOP_SANITIZE})
  message(STATUS "libloop: sanitizers ${LOOP_SANITIZE}")
endif()

# A program that misbehaves on request: the sanitizer script checks that reports fail a run.
if(LOOP_SANITIZE)
  add_executable(sanitizer_canary ${PROJECT_SOURCE_DIR}/tests/sanitizers/canary.cpp)
  target_link_libraries(sanitizer_canary PRIVATE Threads::Threads)
endif()

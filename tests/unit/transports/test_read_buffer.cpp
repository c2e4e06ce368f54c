// The transports' per-thread read buffer, and what creating it does to glibc's heap trimming
// (transports/read_buffer.cpp): a large block freed right after use stays in the heap instead
// of going back to the kernel and being page-faulted in again for the next message.
#include <malloc.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>

#include "transports/read_buffer.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LOOP_TEST_OWN_MALLOC 0  // the sanitizers' allocator replaces glibc's
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LOOP_TEST_OWN_MALLOC 0
#endif
#endif
#ifndef LOOP_TEST_OWN_MALLOC
#define LOOP_TEST_OWN_MALLOC 1
#endif

TEST_CASE("test_read_buffer_is_per_thread_and_stable") {
  char* a = loop::detail::thread_read_buffer();
  CHECK(a == loop::detail::thread_read_buffer());
  std::memset(a, 'x', loop::detail::kReadBufferSize);  // all of it is writable
}

TEST_CASE("test_read_buffer_large_transient_blocks_stay_in_the_heap") {
#if LOOP_TEST_OWN_MALLOC && defined(__GLIBC__)
  loop::detail::thread_read_buffer();
  // Ten stream clients with a 100 KiB message each in flight; a burst of replies frees them
  // all, then the next messages come in. With glibc's first thresholds each burst of frees
  // gives the heap's top back to the kernel (the arena shrinks) and the next messages fault it
  // in again.
  constexpr std::size_t kMessage = 100 * 1024;
  int shrank = 0;
  for (int round = 0; round < 20; ++round) {
    void* messages[10];
    for (auto& m : messages) {
      m = std::malloc(kMessage);
      std::memset(m, 1, kMessage);
    }
    std::size_t arena_in_use = mallinfo2().arena;
    for (auto* m : messages) std::free(m);
    if (mallinfo2().arena < arena_in_use) ++shrank;
  }
  CHECK(shrank == 0);
#else
  SUCCEED("not glibc's allocator in this build");
#endif
}

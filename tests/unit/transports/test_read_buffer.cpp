// The transports' per-thread read buffer, and what creating it does to glibc's heap trimming
// (transports/read_buffer.cpp): a large block freed right after use stays in the heap instead
// of going back to the kernel and being page-faulted in again for the next message.
#include <malloc.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "io/io_buffer.hpp"
#include "sanitizers.hpp"
#include "transports/read_buffer.hpp"

#define LOOP_TEST_OWN_MALLOC (!LOOP_UNDER_SANITIZER)  // the sanitizers' allocator replaces glibc's

TEST_CASE("test_read_buffer_is_per_thread_and_stable") {
  char* a = loop::detail::thread_read_buffer();
  CHECK(a == loop::detail::thread_read_buffer());
  std::memset(a, 'x', loop::detail::kReadBufferSize);  // all of it is writable
}

// Page-aligned, wherever malloc would have put it (io/io_buffer.hpp: the kernel's copy into
// 1-31 bytes past a page boundary runs ten times slower on AMD Zen).
TEST_CASE("test_read_buffer_and_io_buffers_are_page_aligned") {
  auto page_offset = [](const char* p) { return reinterpret_cast<std::uintptr_t>(p) % 4096; };
  CHECK(page_offset(loop::detail::thread_read_buffer()) == 0);
  std::uintptr_t other_thread = 1;
  std::thread([&] { other_thread = page_offset(loop::detail::thread_read_buffer()); }).join();
  CHECK(other_thread == 0);
  // Sizes where malloc would mmap (16 bytes past a page) or carve from the heap, and one that
  // is not a multiple of the alignment (aligned_alloc wants one: IoBuffer rounds it up).
  for (std::size_t size : {std::size_t{1}, std::size_t{16384}, std::size_t{256 * 1024} + 1}) {
    loop::detail::IoBuffer buf(size);
    CHECK(page_offset(buf.data()) == 0);
    CHECK(buf.size() == size);
    std::memset(buf.data(), 'x', size);  // all of it is writable
  }
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

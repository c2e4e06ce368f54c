// The per-thread read buffer (see read_buffer.hpp).
#include "transports/read_buffer.hpp"

#include <cstdlib>

#include "io/io_buffer.hpp"

namespace loop::detail {

namespace {

// glibc gives the top of its heap back to the kernel (brk) whenever a free leaves more than
// its trim threshold there: 128 KiB at first. A stream server echoing 100 KiB messages frees
// each message's string once it is written back, and with ten clients every burst of replies
// moved the heap top down and the next messages faulted it in again: 51-66 µs of server CPU
// per request against the epoll server's 16-20, about 10,000 brk calls and 300,000 page faults
// a second (docs/performance.md, "What bounds"). glibc raises both thresholds by itself the
// first time it frees an mmapped block (mallopt(3), "dynamic mmap threshold": the mmap
// threshold to the block's size, the trim threshold to twice that), which a process whose
// only large buffer lives forever may never do. So the first read buffer does it once, with a
// 4 MiB block: blocks under 4 MiB then come from the heap and up to 8 MiB of freed heap is
// kept, and the same server costs 18-22 µs, with no brk and no page faults. (256 KiB was not
// enough: ten 100 KiB messages outgrow its 512 KiB trim threshold.) Where the application set
// malloc parameters of its own (mallopt, GLIBC_TUNABLES), glibc's dynamic thresholds are off
// and this changes nothing.
constexpr std::size_t kMallocAdaptBlock = 4 << 20;

void adapt_malloc_thresholds_once() {
#if defined(__GLIBC__)
  static const bool adapted = [] {
    void* block = std::malloc(kMallocAdaptBlock);
    asm volatile("" : : "r"(block) : "memory");  // a malloc/free pair the compiler keeps
    std::free(block);
    return true;
  }();
  (void)adapted;
#endif
}

}  // namespace

char* thread_read_buffer() {
  thread_local IoBuffer buffer = [] {
    adapt_malloc_thresholds_once();
    return IoBuffer(kReadBufferSize);  // page-aligned: see io/io_buffer.hpp
  }();
  return buffer.data();
}

}  // namespace loop::detail

// IoBuffer: memory the kernel copies into (recv, read, pread), page-aligned.
//
// Why aligned: on AMD Zen CPUs the kernel's copy to user space (`rep movsb`) runs about ten
// times slower when the destination sits 1 to 31 bytes past a page boundary and the source
// is page-aligned, as socket and page-cache pages are. That is exactly where glibc puts a
// block it mmaps (16 bytes past: any block of 128 KiB or more, unless its thresholds were
// raised). Measured on the benchmarks' AMD EPYC: a 256 KiB pread of a cached file took 93 µs
// into page+1..31, 9.3 µs into page+0 or page+32 and beyond; the sock_* echo server cost 61.8
// µs per 100 KiB request with its buffer at page+16, 26.1 page-aligned (docs/performance.md,
// "What bounds", 9). glibc's own memcpy already avoids `rep movsb` at such short distances.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

namespace loop::detail {

class IoBuffer {
 public:
  static constexpr std::size_t kAlignment = 4096;

  explicit IoBuffer(std::size_t size)
      : data_(static_cast<char*>(std::aligned_alloc(kAlignment, round_up(size)))), size_(size) {
    if (!data_) throw std::bad_alloc();
  }

  char* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }

 private:
  // aligned_alloc wants a multiple of the alignment.
  static std::size_t round_up(std::size_t n) {
    return n == 0 ? kAlignment : (n + kAlignment - 1) / kAlignment * kAlignment;
  }
  struct Free {
    void operator()(char* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<char, Free> data_;
  std::size_t size_;
};

}  // namespace loop::detail

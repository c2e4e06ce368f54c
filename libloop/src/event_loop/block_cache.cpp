// allocate_block/deallocate_block: the slab allocator for small blocks, operator new for the
// rest. Under AddressSanitizer (and TSan) every block comes from operator new, so that a use
// after free of a handle or a frame is still caught (the slab allocator's own tests run there
// all the same: tests/unit/core/test_slab_heap.cpp).
#include "loop/block_cache.hpp"

#include <cstddef>
#include <new>

#include "event_loop/slab_heap.hpp"
#include "sanitizers.hpp"

#define LOOP_SLAB_BLOCKS (!LOOP_UNDER_SANITIZER)

namespace loop::detail {

namespace {

// The slab block for (size, align), or 0 if the block is not the slab allocator's. Sizes
// round up to 8 bytes, to 16 for 16-byte alignment (the slab's 16-byte classes are 16-byte
// aligned): a callback capturing one pointer takes 40 bytes, where malloc would take 48.
std::size_t slab_size(std::size_t size, std::size_t align) {
  if (!LOOP_SLAB_BLOCKS || align > 16) return 0;
  std::size_t unit = align > slab::kGranule ? 16 : slab::kGranule;
  std::size_t rounded = (size + unit - 1) / unit * unit;
  if (rounded == 0) rounded = unit;
  return rounded <= slab::kMaxBlockSize ? rounded : 0;
}

}  // namespace

void* allocate_block(std::size_t size, std::size_t align) {
  if (std::size_t rounded = slab_size(size, align)) return slab::allocate(rounded);
  if (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__)
    return ::operator new(size, std::align_val_t(align));
  return ::operator new(size);
}

void deallocate_block(void* p, std::size_t size, std::size_t align) noexcept {
  if (slab_size(size, align)) {
    slab::deallocate(p);
  } else if (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
    // Unsized: clang declares the sized forms only with -fsized-deallocation.
    ::operator delete(p, std::align_val_t(align));
  } else {
    ::operator delete(p);
  }
}

}  // namespace loop::detail

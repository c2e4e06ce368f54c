// Memory for what the loop allocates and frees once per callback or per await: handles
// (loop/handle.hpp), coroutine frames (loop/coroutine.hpp), futures' state (loop/future.hpp).
#pragma once

#include <cstddef>

namespace loop::detail {

/// Like ::operator new(size), for an object aligned to `align`: small blocks come from the
/// loop's slab allocator (event_loop/slab_heap.hpp), larger ones from operator new.
void* allocate_block(std::size_t size, std::size_t align = alignof(std::max_align_t));
/// Gives back a block from allocate_block, with the size and alignment it was allocated with.
void deallocate_block(void* p, std::size_t size,
                      std::size_t align = alignof(std::max_align_t)) noexcept;

/// allocate_block/deallocate_block as a standard allocator: for the loop's per-await state
/// that lives in standard containers (a future's shared state, its done-callback list).
template <class T>
struct BlockAllocator {
  using value_type = T;
  BlockAllocator() noexcept = default;
  template <class U>
  BlockAllocator(const BlockAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(allocate_block(n * sizeof(T), alignof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { deallocate_block(p, n * sizeof(T), alignof(T)); }
  template <class U>
  bool operator==(const BlockAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace loop::detail

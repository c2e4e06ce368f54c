// Memory for what the loop allocates and frees once per callback or per await: handles
// (loop/handle.hpp) and coroutine frames (loop/coroutine.hpp).
#pragma once

#include <cstddef>

namespace loop::detail {

/// Like ::operator new(size), for an object aligned to `align`: small blocks come from the
/// loop's slab allocator (event_loop/slab_heap.hpp), larger ones from operator new.
void* allocate_block(std::size_t size, std::size_t align = alignof(std::max_align_t));
/// Gives back a block from allocate_block, with the size and alignment it was allocated with.
void deallocate_block(void* p, std::size_t size,
                      std::size_t align = alignof(std::max_align_t)) noexcept;

}  // namespace loop::detail

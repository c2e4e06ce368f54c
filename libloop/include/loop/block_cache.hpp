// A per-thread cache of small freed blocks, for what the loop allocates and frees once per
// callback or per await: handles (loop/handle.hpp) and coroutine frames (loop/coroutine.hpp).
#pragma once

#include <cstddef>

namespace loop::detail {

/// Like ::operator new(size), but served from this thread's cache of freed blocks when it can.
void* allocate_block(std::size_t size);
/// Gives back a block from allocate_block; `size` must be the size it was allocated with.
void deallocate_block(void* p, std::size_t size) noexcept;

}  // namespace loop::detail

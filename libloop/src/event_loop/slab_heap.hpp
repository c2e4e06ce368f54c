// The slab allocator behind loop/block_cache.hpp: small blocks carved from 64 KiB pages, one
// size class per page, each thread allocating from its own pages.
//
// Why not malloc: a burst of a million call_soon callbacks is a million small blocks. Carving
// them from a page costs a few instructions where glibc's malloc walks its bins and then splits
// the top chunk (about 20 ns each here), and no 8-byte chunk header is added to each block:
// every byte costs a page fault on first touch (about 0.5 ns a byte on this machine).
//
// The design is mimalloc's, reduced to what the loop needs:
// - A page (kPageSize, aligned to its size, so a block finds its page by masking its address)
//   holds blocks of one size, a free list, a bump pointer over the part never used, and a
//   count of the blocks handed out. A page whose blocks all came back is kept aside, and given
//   back to the kernel by trim(), which the event loop calls before it sleeps: memory follows
//   use as with malloc, without a burst paying for the unmapping.
// - Each thread has a heap: per size class, the list of its pages that have room. Allocating
//   and freeing on the owning thread takes no lock and no atomic read-modify-write.
// - A block freed on another thread (call_soon_threadsafe's handles are made on the caller's
//   thread and freed on the loop's) is handed to its page's owner under a mutex; the owner
//   takes such blocks back the next time it needs a page.
// - When a thread exits, its pages that still hold live blocks are orphaned: the last block
//   freed into one, on whatever thread, returns the page. Allocations made after a thread's
//   heap is gone (from other thread_local destructors) come from one shared heap, under the
//   mutex.
#pragma once

#include <cstddef>

namespace loop::detail::slab {

inline constexpr std::size_t kPageSize = 64 * 1024;
inline constexpr std::size_t kGranule = 8;
inline constexpr std::size_t kMaxBlockSize = 1024;

/// A block of `size` bytes, a multiple of kGranule and at most kMaxBlockSize. Blocks whose
/// size is a multiple of 16 are 16-byte aligned; the others 8-byte aligned.
void* allocate(std::size_t size);
/// Gives back a block from allocate(), on any thread.
void deallocate(void* block) noexcept;

/// Gives back to the kernel up to `max_pages` of this thread's empty pages (beyond a couple
/// kept for reuse); returns how many remain to give back. Called by the event loop before it
/// sleeps in its poll, and by the executor's threads before they wait for work.
std::size_t trim(std::size_t max_pages = static_cast<std::size_t>(-1)) noexcept;

/// Pages taken from the kernel and not yet given back, by every thread (for tests and
/// diagnostics).
std::size_t pages_mapped() noexcept;

}  // namespace loop::detail::slab

// The buffer every transport of a thread reads into: one per thread, not one per transport
// (uvloop does the same per loop). A read hands data_received / datagram_received a view of
// it that is valid for that call only, and a loop runs its callbacks one at a time on one
// thread, so no two reads ever use it at once. 10,000 connections then hold no read buffers
// at all, where a buffer each kept up to 256 KiB resident per connection.
#pragma once

#include <cstddef>

namespace loop::detail {

/// asyncio's max_size for stream reads: one read per readiness event, at most this much.
inline constexpr std::size_t kReadBufferSize = 256 * 1024;

/// This thread's read buffer, kReadBufferSize bytes, page-aligned (io/io_buffer.hpp says why).
char* thread_read_buffer();

}  // namespace loop::detail

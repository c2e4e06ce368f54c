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

/// Where the read buffer starts: a page boundary. On the AMD EPYC the benchmarks ran on, the
/// kernel's copy of a 100 KiB recv into a buffer 16 bytes past a page boundary (where glibc puts
/// a block it mmaps: any block of 128 KiB or more, unless its thresholds were raised) took
/// twice the system time of a copy into a page-aligned one: the sock_* echo server cost 61 µs
/// per request against 29 (docs/performance.md, "What bounds"). Aligned, the buffer does not
/// depend on where malloc happens to put it.
inline constexpr std::size_t kReadBufferAlignment = 4096;

/// This thread's read buffer, kReadBufferSize bytes.
char* thread_read_buffer();

}  // namespace loop::detail

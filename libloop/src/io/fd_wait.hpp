// Private helpers of the socket coroutines: wait for an fd through add_reader/add_writer.
#pragma once

#include <fcntl.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

#include "loop/loop.hpp"

namespace loop::detail {

[[noreturn]] inline void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::system_category(), what);
}

inline bool would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

/// A blocking socket would block the whole loop: refused with std::invalid_argument.
inline void check_nonblocking(int sock) {
  int flags = ::fcntl(sock, F_GETFL);
  if (flags < 0) throw_errno(errno, "bad socket " + std::to_string(sock));
  if (!(flags & O_NONBLOCK)) throw std::invalid_argument("the socket must be non-blocking");
}

/// The sock_* coroutines make the check in debug mode only, as asyncio does: an fcntl per call
/// costs as much as the recv it guards (a bad fd still fails, with the call's own error).
inline void check_nonblocking_in_debug(const EventLoop& loop, int sock) {
  if (loop.get_debug()) check_nonblocking(sock);
}

/// A future done when `fd` is ready for reading (direction 0) or writing (1), for a task to
/// await, the way asyncio's sock_* methods wait: add_reader/add_writer, and a done-callback on
/// the future that removes the watch again, also when the awaiting task is cancelled.
/// A plain function, not a coroutine: `co_await wait_fd(...)` suspends on the future itself,
/// with no frame of its own to allocate and resume for every wait.
inline Future<void> wait_fd(EventLoop& loop, int fd, int direction) {
  Future<void> fut = loop.create_future<void>();
  FutureStateBase* owner = fut.state().get();
  // asyncio's _sock_read_done / _sock_write_done remove the watch unless its handle was
  // cancelled: remove_reader took it away, or another add_reader (another task's sock_recv on
  // the same socket) replaced it, and that one stays. The watch is tagged with this future
  // instead (alive while its done-callbacks run, and kept alive by the watch's callback while
  // the tag is the fd's), so the callback captures 16 trivially copyable bytes: no allocation.
  // Added on the state as a plain callback: Future::add_done_callback would wrap it in a
  // second std::function, on the heap.
  std::uint64_t remove_id = owner->add_done_callback(
      [owner, fd, direction] { owner->loop().remove_fd_watch(fd, direction, owner); },
      capture_context());
  // Ready: the watch is removed in the fd's own callback, before the result is set, as
  // asyncio 3.7's _sock_recv does ("remove the callback early"); the done-callback then has
  // nothing to do, and is taken off rather than queued for every wait. It stays for a future
  // cancelled first (asyncio 3.8's fix: a cancelled sock_recv leaves no reader behind).
  auto on_ready = [fut, owner, fd, direction, remove_id] {
    if (fut.done()) return;
    owner->loop().remove_fd_watch(fd, direction, owner);
    owner->remove_done_callback(remove_id);
    fut.set_result();
  };
  loop.watch_fd(fd, direction, owner,
                named(direction == 0 ? "sock_wait_readable" : "sock_wait_writable", on_ready));
  return fut;
}

}  // namespace loop::detail

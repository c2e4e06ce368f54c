// Private helpers of the socket coroutines: wait for an fd through add_reader/add_writer, and
// make the socket call in the fd's callback, as asyncio does.
#pragma once

#include <fcntl.h>

#include <cerrno>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

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

/// What an attempt of a socket call gives: a value (or, for a call without one, true) once
/// the call is done; nothing (false) while the socket would block.
template <class T>
using Attempt = std::conditional_t<std::is_void_v<T>, bool, std::optional<T>>;

/// asyncio's sock_* waits (BaseSelectorEventLoop._sock_recv, _sock_sendall, _sock_accept,
/// _sock_connect_cb): add_reader (direction 0) or add_writer (1) with a callback that makes
/// the system call itself, `attempt()`, and sets the returned future's result; the awaiting
/// task only takes it when it resumes. Data that arrives between the callback and the task's
/// step is left in the socket, as asyncio leaves it. `attempt` returns nothing while the call
/// would block (EAGAIN, EINTR: the watch stays for the next poll, as sendall's rest does), and
/// throws for an error, which goes to the future. A future done before its callback runs (the
/// task was cancelled) makes the callback do nothing: the data stays in the socket.
/// `attempt` runs only while the future is pending, so it may point into the awaiting frame
/// (a cancelled frame goes away with the watch still there until the done-callback runs).
/// A plain function, not a coroutine: `co_await` suspends on the future itself, with no
/// frame of its own to allocate and resume for every wait.
template <class T, class Attempt_>
Future<T> wait_fd_call(EventLoop& loop, int fd, int direction, Attempt_ attempt) {
  Future<T> fut = loop.create_future<T>();
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
  // Done: the watch is removed in the fd's own callback, before the outcome is set, as
  // asyncio 3.7's _sock_recv does ("remove the callback early"); the done-callback then has
  // nothing to do, and is taken off rather than queued for every wait. It stays for a future
  // cancelled first (asyncio 3.8's fix: a cancelled sock_recv leaves no reader behind).
  auto on_ready = [fut, owner, fd, direction, remove_id, attempt]() mutable {
    if (fut.done()) return;  // asyncio's "if fut.done(): return"
    auto finish = [&] {
      owner->loop().remove_fd_watch(fd, direction, owner);
      owner->remove_done_callback(remove_id);
    };
    std::exception_ptr error;
    Attempt<T> got = [&]() -> Attempt<T> {
      try {
        return attempt();
      } catch (...) {
        error = std::current_exception();
        return {};
      }
    }();
    if (error) {
      finish();
      fut.set_exception(std::move(error));
      return;
    }
    if (!got) return;  // would block: try again at the next poll
    finish();
    if constexpr (std::is_void_v<T>)
      fut.set_result();
    else
      fut.set_result(std::move(*got));
  };
  loop.watch_fd(fd, direction, owner,
                named(direction == 0 ? "sock_wait_readable" : "sock_wait_writable", on_ready));
  return fut;
}

/// `co_await take(fut)`: as `co_await fut`, but moves the result out instead of copying it
/// (a received string is not allocated twice). Only for a future nobody else reads.
template <class T>
struct TakeAwaiter : FutureAwaiter<T> {
  T await_resume() {
    if (this->task) this->task->throw_if_pending();
    return this->state->take_result();
  }
};
template <class T>
TakeAwaiter<T> take(const Future<T>& fut) {
  return TakeAwaiter<T>{{fut.state()}};
}

}  // namespace loop::detail

// Noticing that one child exited, without a SIGCHLD handler and without reaping anyone else's
// children: a pidfd watched by the loop (asyncio's PidfdChildWatcher), or, where pidfd_open is
// missing, a thread blocked in waitpid() on that one pid (asyncio's ThreadedChildWatcher).
#pragma once

#include <sys/types.h>

#include <asio/posix/stream_descriptor.hpp>
#include <atomic>
#include <functional>
#include <memory>

#include "loop/event_loop.hpp"

namespace loop::detail {

/// The returncode of a wait status, as asyncio reports it: the exit code, or -N for signal N.
int returncode_from_status(int status);

class ChildWatcher : public std::enable_shared_from_this<ChildWatcher> {
 public:
  using Callback = std::function<void(int returncode)>;
  /// Watches `pid` (a child of this process, not yet reaped); once it has exited and been
  /// reaped, on_exit(returncode) runs as a callback of the loop. force_thread: use the
  /// waitpid thread even where pidfd works (for tests of the fallback).
  static std::shared_ptr<ChildWatcher> watch(EventLoop& loop, pid_t pid, Callback on_exit,
                                             bool force_thread = false);
  ChildWatcher(EventLoop& loop, pid_t pid, Callback on_exit);
  ~ChildWatcher();
  ChildWatcher(const ChildWatcher&) = delete;
  ChildWatcher& operator=(const ChildWatcher&) = delete;

  /// The child was reaped: its pid may belong to another process now, signal it no more.
  bool reaped() const { return reaped_.load(); }
  /// Whether the child has exited (reaped or not): waitid(WNOWAIT), which reaps nothing.
  bool exited() const;
  /// Stops watching; on_exit will not run. A child not reaped yet is left to a thread that
  /// reaps it when it exits, so that it never stays a zombie.
  void stop();
  bool uses_pidfd() const { return pidfd_.is_open(); }

 private:
  void arm();
  void do_wait();  // asyncio's PidfdChildWatcher._do_wait
  void start_thread();

  EventLoop& loop_;
  pid_t pid_;
  Callback on_exit_;
  asio::posix::stream_descriptor pidfd_;
  std::atomic<bool> reaped_{false};
  std::atomic<bool> thread_started_{false};
  bool wait_pending_ = false;
  HandleRef wait_handle_;
};

}  // namespace loop::detail

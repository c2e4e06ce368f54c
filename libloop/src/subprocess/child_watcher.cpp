// ChildWatcher: pidfd (Linux 5.3+) through asio, or a waitpid thread.
#include "subprocess/child_watcher.hpp"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "executor/signal_free_thread.hpp"
#include "loop/loop.hpp"
#include "transports/transport_support.hpp"

namespace loop::detail {

namespace {
int pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

// Reaps `pid`, blocking; asyncio reports 255 when someone else reaped it first.
int blocking_wait(pid_t pid) {
  int status = 0;
  pid_t r;
  while ((r = ::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  return r == pid ? returncode_from_status(status) : 255;
}
}  // namespace

int returncode_from_status(int status) {
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return status;  // not reached for a terminated child
}

std::shared_ptr<ChildWatcher> ChildWatcher::watch(EventLoop& loop, pid_t pid, Callback on_exit,
                                                  bool force_thread) {
  auto w = std::make_shared<ChildWatcher>(loop, pid, std::move(on_exit));
  int fd = force_thread ? -1 : pidfd_open(pid);
  if (fd >= 0) {
    asio::error_code ec;
    w->pidfd_.assign(fd, ec);
    if (ec) {
      ::close(fd);
      w->start_thread();
    } else {
      w->arm();
    }
  } else {
    w->start_thread();  // ENOSYS (kernel < 5.3) or seccomp: one thread per child
  }
  return w;
}

ChildWatcher::ChildWatcher(EventLoop& loop, pid_t pid, Callback on_exit)
    : loop_(loop), pid_(pid), on_exit_(std::move(on_exit)), pidfd_(loop.io_context()) {
  wait_handle_ = HandleRef(
      new IoHandle<ChildWatcher>(this, &ChildWatcher::do_wait, "PidfdChildWatcher._do_wait"));
}

ChildWatcher::~ChildWatcher() {
  static_cast<IoHandle<ChildWatcher>*>(wait_handle_.get())->detach();
  stop();
}

bool ChildWatcher::exited() const {
  if (reaped_) return true;
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
    return true;  // ECHILD: not ours to wait for any more
  return info.si_pid == pid_;
}

void ChildWatcher::arm() {
  if (wait_pending_ || !pidfd_.is_open()) return;
  wait_pending_ = true;
  // A pidfd turns readable when the process exits. Only the handle is queued here; waitpid
  // runs from the ready queue.
  pidfd_.async_wait(asio::posix::descriptor_base::wait_read, [self = shared_from_this()](
                                                                 const asio::error_code& ec) {
    self->wait_pending_ = false;
    if (ec == asio::error::operation_aborted || !self->pidfd_.is_open()) return;
    schedule_once(self->loop_, static_cast<IoHandle<ChildWatcher>*>(self->wait_handle_.get()),
                  "PidfdChildWatcher._do_wait");
  });
}

void ChildWatcher::do_wait() {
  if (!pidfd_.is_open() || reaped_) return;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) {  // not exited after all
    arm();
    return;
  }
  int rc = r == pid_ ? returncode_from_status(status) : 255;
  reaped_ = true;
  asio::error_code ec;
  pidfd_.close(ec);
  if (!on_exit_) return;
  // As asyncio's watcher callback: the transport learns the news in a callback of its own.
  loop_.call_soon(named("_process_exited", [cb = std::move(on_exit_), rc] { cb(rc); }));
  on_exit_ = nullptr;
}

void ChildWatcher::start_thread() {
  thread_started_ = true;
  std::weak_ptr<ChildWatcher> weak = weak_from_this();
  start_signal_free_thread([link = loop_.link(), pid = pid_, weak] {
    int rc = blocking_wait(pid);
    if (auto w = weak.lock()) w->reaped_ = true;
    // asyncio's ThreadedChildWatcher: call_soon_threadsafe(callback, pid, returncode).
    auto h = make_handle(named("_process_exited", [weak, rc] {
      auto w = weak.lock();
      if (!w || !w->on_exit_) return;
      auto cb = std::move(w->on_exit_);
      w->on_exit_ = nullptr;
      cb(rc);
    }));
    h->kind = HandleKind::threadsafe;
    link->post(std::move(h));
  }).detach();
}

void ChildWatcher::stop() {
  on_exit_ = nullptr;
  asio::error_code ec;
  bool had_pidfd = pidfd_.is_open();
  pidfd_.close(ec);
  if (reaped_ || thread_started_ || !had_pidfd) return;
  // Nobody waits for the child any more: a thread does, so it does not stay a zombie.
  thread_started_ = true;
  start_signal_free_thread([pid = pid_] { blocking_wait(pid); }).detach();
}

}  // namespace loop::detail

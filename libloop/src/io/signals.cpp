// add_signal_handler/remove_signal_handler on asio::signal_set. asio's own signal handler only
// writes the number to a pipe; the loop reads it in its poll phase and queues the user's
// callback, so the callback never runs in signal context (asyncio's set_wakeup_fd design).
#include "loop/signals.hpp"

#include <signal.h>

#include <asio/signal_set.hpp>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <system_error>

#include "loop/event_loop.hpp"

namespace loop {

std::string signal_name(int sig) {
  if (sig >= SIGRTMIN && sig <= SIGRTMAX) {
    if (sig == SIGRTMIN) return "SIGRTMIN";
    if (sig == SIGRTMAX) return "SIGRTMAX";
    return "SIGRTMIN+" + std::to_string(sig - SIGRTMIN);
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (const char* abbrev = ::sigabbrev_np(sig)) return std::string("SIG") + abbrev;
#endif
  return "signal " + std::to_string(sig);
}

namespace detail {

class SignalHandlers : public std::enable_shared_from_this<SignalHandlers> {
 public:
  explicit SignalHandlers(EventLoop& loop) : loop_(loop), set_(loop.io_context()) {}

  bool has(int sig) const { return handlers_.count(sig) != 0; }

  /// Registers `sig` with asio (first time) and installs `cb`; returns the handle replaced.
  HandleRef set(int sig, HandleRef cb) {
    auto it = handlers_.find(sig);
    if (it == handlers_.end()) {
      std::error_code ec;
      set_.add(sig, ec);
      if (ec) {
        if (ec.value() == EINVAL)
          throw std::invalid_argument("sig " + std::to_string(sig) + " cannot be caught");
        throw std::system_error(ec, "add_signal_handler(" + signal_name(sig) + ")");
      }
      // asyncio calls siginterrupt(sig, False): system calls interrupted by the signal restart.
      struct sigaction sa;
      if (::sigaction(sig, nullptr, &sa) == 0 && !(sa.sa_flags & SA_RESTART)) {
        sa.sa_flags |= SA_RESTART;
        ::sigaction(sig, &sa, nullptr);
      }
      it = handlers_.emplace(sig, HandleRef()).first;
    }
    HandleRef old = std::exchange(it->second, std::move(cb));
    wait();
    return old;
  }

  /// Unregisters `sig` (asio restores SIG_DFL when no other set holds it); returns the handle.
  HandleRef remove(int sig) {
    auto it = handlers_.find(sig);
    if (it == handlers_.end()) return {};
    HandleRef old = std::move(it->second);
    handlers_.erase(it);
    std::error_code ec;
    set_.remove(sig, ec);
    return old;
  }

  void clear() {
    for (auto& [sig, h] : handlers_) h->cancelled = true;
    handlers_.clear();
    std::error_code ec;
    set_.clear(ec);
    set_.cancel(ec);
    waiting_ = false;
  }

 private:
  void wait() {
    if (waiting_) return;
    waiting_ = true;
    set_.async_wait([weak = weak_from_this()](const std::error_code& ec, int sig) {
      auto self = weak.lock();
      if (!self) return;
      self->waiting_ = false;
      if (ec) return;  // cancelled by close()
      self->delivered(sig);
      if (!self->handlers_.empty()) self->wait();
    });
  }

  // Runs in the poll phase: only queues the callback (asyncio's _handle_signal).
  void delivered(int sig) {
    auto it = handlers_.find(sig);
    if (it == handlers_.end()) return;  // removed since
    HandleRef h = it->second;
    if (h->cancelled) {
      loop_.remove_signal_handler(sig);
      return;
    }
    if (loop_.tracer()) loop_.trace_flat("signal", {{"signal", sig}, {"name", signal_name(sig)}});
    loop_.schedule(std::move(h), "signal");
  }

  EventLoop& loop_;
  asio::signal_set set_;
  std::map<int, HandleRef> handlers_;
  bool waiting_ = false;
};

}  // namespace detail

namespace {

void check_signal_number(int sig) {
  if (sig < 1 || sig >= NSIG)
    throw std::invalid_argument("invalid signal number " + std::to_string(sig));
}

void check_signal(int sig) {
  check_signal_number(sig);
  // asyncio lets signal.signal() fail and reports RuntimeError; refusing the uncatchable ones
  // up front as std::invalid_argument is this project's contract (issue 3).
  if (sig == SIGKILL || sig == SIGSTOP)
    throw std::invalid_argument("sig " + std::to_string(sig) + " cannot be caught");
}

}  // namespace

void EventLoop::add_signal_handle(int sig, detail::HandleRef cb) {
  check_signal(sig);
  if (get_debug()) check_thread();
  if (!signal_handlers_) signal_handlers_ = std::make_shared<detail::SignalHandlers>(*this);
  // As asyncio, the handle replaced is not cancelled: a delivery already queued still runs.
  signal_handlers_->set(sig, std::move(cb));
}

bool EventLoop::remove_signal_handler(int sig) {
  check_signal_number(sig);
  if (!signal_handlers_) return false;
  return static_cast<bool>(signal_handlers_->remove(sig));
}

void EventLoop::close_signal_handlers() {
  if (signal_handlers_) signal_handlers_->clear();
}

}  // namespace loop

// add_signal_handler/remove_signal_handler, on asyncio's design (signal.set_wakeup_fd and the
// self-pipe): a process-wide signal handler only writes the signal's number to a wakeup pipe of
// each loop that handles it. The loop watches the pipe's read end: the poll queues its reader
// (asyncio's _read_from_self) after the callbacks already ready, and the reader, when it runs,
// queues the handler current at that moment (_handle_signal). So a callback runs one iteration
// after its signal, never in signal context, not at all if removed meanwhile, and signals run
// in the order they arrived (the pipe keeps it; asio's signal_set counted signals per number and
// replayed them sorted by number).
//
// Several loops may handle the same signal: each of them runs its handler (the byte goes to
// every such loop's pipe). The disposition is ours while any loop handles the signal; the last
// removal restores SIG_DFL, as asyncio and asio do.
#include "loop/signals.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <system_error>

#include "io/poller.hpp"
#include "loop/event_loop.hpp"
#include "transports/transport_support.hpp"

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

namespace {

static_assert(NSIG <= 256, "a signal's number is written to the wakeup pipe as one byte");
constexpr int kWords = (NSIG + 63) / 64;
static_assert(std::atomic<std::uint64_t>::is_always_lock_free &&
                  std::atomic<int>::is_always_lock_free,
              "the signal handler may only use lock-free atomics");

// One loop's wakeup pipe, as the signal handler sees it. Slots are never freed (a handler on
// another thread may be walking the list): a closed loop's slot is reused by the next loop.
struct WakeupSlot {
  std::atomic<int> fd{-1};                       // the pipe's write end; -1: no loop
  std::atomic<std::uint64_t> watched[kWords]{};  // bit sig: the loop handles sig
  std::atomic<std::uint64_t> dropped[kWords]{};  // bit sig: its byte found the pipe full
  std::atomic<int> busy{0};                      // signal handlers between reading fd and done
  std::atomic<WakeupSlot*> next{nullptr};
  bool taken = false;  // under wakeup_mutex()

  // In signal context: only write(2) and lock-free atomics.
  void notify(int wfd, int sig) noexcept {
    auto byte = static_cast<unsigned char>(sig);
    ssize_t n;
    do n = ::write(wfd, &byte, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1) return;
    // The pipe is full (a loop that does not run for a long while): the byte is dropped, as
    // CPython drops it, but the signal is remembered and the reader reports it after the bytes.
    // The 0 byte makes sure the reader looks: if it finds the pipe still full, the reader has
    // bytes to read, and it reads the flags only after it has emptied the pipe.
    dropped[sig / 64].fetch_or(std::uint64_t{1} << (sig % 64));
    const unsigned char zero = 0;
    do n = ::write(wfd, &zero, 1);
    while (n < 0 && errno == EINTR);
  }
};

// The slots the signal handler walks, newest first; added to under wakeup_mutex().
constinit std::atomic<WakeupSlot*> wakeup_slots{nullptr};

// Guards the slots' allocation, the counts below and the dispositions. Never destroyed: a loop
// may be destroyed during static destruction.
std::mutex& wakeup_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
int loops_handling[NSIG] = {};  // under wakeup_mutex(): our handler is installed while > 0

// The process-wide handler of every signal a loop handles.
void on_signal(int sig) {
  const int saved_errno = errno;
  const std::uint64_t bit = std::uint64_t{1} << (sig % 64);
  for (WakeupSlot* s = wakeup_slots.load(std::memory_order_acquire); s;
       s = s->next.load(std::memory_order_acquire)) {
    // busy first: a loop releasing its slot clears `watched` and `fd`, then waits for busy to
    // fall to 0 before it closes the pipe; whatever this handler reads after the increment is
    // either still the old loop's (which then waits for us) or already the new owner's.
    s->busy.fetch_add(1);
    if (s->watched[sig / 64].load() & bit) {
      int fd = s->fd.load();
      if (fd >= 0) s->notify(fd, sig);
    }
    s->busy.fetch_sub(1);
  }
  errno = saved_errno;
}

WakeupSlot* take_slot(int wfd) {
  std::lock_guard<std::mutex> lock(wakeup_mutex());
  WakeupSlot* s = wakeup_slots.load(std::memory_order_relaxed);
  while (s && s->taken) s = s->next.load(std::memory_order_relaxed);
  if (!s) {
    s = new WakeupSlot;
    s->next.store(wakeup_slots.load(std::memory_order_relaxed), std::memory_order_relaxed);
    wakeup_slots.store(s, std::memory_order_release);
  }
  s->taken = true;
  for (auto& w : s->dropped) w.store(0);
  s->fd.store(wfd);
  return s;
}

// After this, no signal handler writes to the slot's pipe any more: it can be closed.
void release_slot(WakeupSlot* s) noexcept {
  for (auto& w : s->watched) w.store(0);
  s->fd.store(-1);
  while (s->busy.load() != 0) ::sched_yield();  // a handler on another thread, writing
  std::lock_guard<std::mutex> lock(wakeup_mutex());
  s->taken = false;
}

}  // namespace

class SignalHandlers final : public PollWatcher {
 public:
  explicit SignalHandlers(EventLoop& loop) : loop_(loop), entry_(*this) {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
      throw std::system_error(errno, std::system_category(), "add_signal_handler: wakeup pipe");
    rfd_ = fds[0];
    wfd_ = fds[1];
    try {
      reader_ =
          new IoHandle<SignalHandlers>(this, &SignalHandlers::read_from_self, "_read_from_self");
      reader_ref_ = HandleRef(reader_);
      loop_.poller().watch(entry_, rfd_, EPOLLIN);
      slot_ = take_slot(wfd_);
    } catch (...) {
      loop_.poller().remove(entry_);
      ::close(rfd_);
      ::close(wfd_);
      throw;
    }
  }
  /// close() and the loop's destructor: every handler goes (SIG_DFL again), and the pipe.
  ~SignalHandlers() {
    for (auto& [sig, h] : handlers_) {
      h->cancelled = true;
      unwatch(sig);
    }
    release_slot(slot_);
    loop_.poller().remove(entry_);
    reader_->detach();  // still queued: it does nothing
    ::close(rfd_);
    ::close(wfd_);
  }
  SignalHandlers(const SignalHandlers&) = delete;
  SignalHandlers& operator=(const SignalHandlers&) = delete;

  /// Installs `cb` for `sig` (the process-wide handler, the first time a loop handles `sig`);
  /// returns the handle replaced.
  HandleRef set(int sig, HandleRef cb) {
    auto it = handlers_.find(sig);
    if (it == handlers_.end()) {
      // Watched before the handler is installed: a signal arriving in between reaches us.
      slot_->watched[sig / 64].fetch_or(bit(sig));
      std::lock_guard<std::mutex> lock(wakeup_mutex());
      if (loops_handling[sig] == 0) {
        struct sigaction sa {};
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        // asyncio calls siginterrupt(sig, False): system calls interrupted by it restart.
        sa.sa_flags = SA_RESTART;
        if (::sigaction(sig, &sa, nullptr) != 0) {
          int err = errno;
          slot_->watched[sig / 64].fetch_and(~bit(sig));
          if (err == EINVAL)
            throw std::invalid_argument("sig " + std::to_string(sig) + " cannot be caught");
          throw std::system_error(err, std::system_category(),
                                  "add_signal_handler(" + signal_name(sig) + ")");
        }
      }
      ++loops_handling[sig];
      it = handlers_.emplace(sig, HandleRef()).first;
    }
    return std::exchange(it->second, std::move(cb));
  }

  /// Unregisters `sig` (SIG_DFL again when no other loop handles it); returns the handle.
  HandleRef remove(int sig) {
    auto it = handlers_.find(sig);
    if (it == handlers_.end()) return {};
    HandleRef old = std::move(it->second);
    handlers_.erase(it);
    unwatch(sig);
    return old;
  }

  // The poll phase: the pipe has bytes. Only the reader is queued, after the callbacks already
  // ready (asyncio's selector event for its self-pipe).
  void poll_ready(bool readable, bool) override {
    if (readable) schedule_once(loop_, reader_, "signal");
  }

 private:
  static std::uint64_t bit(int sig) { return std::uint64_t{1} << (sig % 64); }

  void unwatch(int sig) noexcept {
    slot_->watched[sig / 64].fetch_and(~bit(sig));
    std::lock_guard<std::mutex> lock(wakeup_mutex());
    if (--loops_handling[sig] == 0) {
      struct sigaction sa {};
      sa.sa_handler = SIG_DFL;
      sigemptyset(&sa.sa_mask);
      ::sigaction(sig, &sa, nullptr);
    }
  }

  // asyncio's _read_from_self: each signal in the order its byte arrived, then those whose
  // byte was dropped (the pipe was full; a standard signal is one pending signal anyway).
  void read_from_self() {
    unsigned char buf[4096];
    for (;;) {
      ssize_t n = ::read(rfd_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EAGAIN: empty
      for (ssize_t i = 0; i < n; ++i)
        if (buf[i] != 0) handle_signal(buf[i]);  // 0: only a wake-up (see notify)
    }
    for (int w = 0; w < kWords; ++w) {
      std::uint64_t bits = slot_->dropped[w].exchange(0);
      for (int b = 0; b < 64; ++b)
        if (bits & (std::uint64_t{1} << b)) handle_signal(w * 64 + b);
    }
  }

  // asyncio's _handle_signal: the handler current now runs, queued after the ready callbacks.
  void handle_signal(int sig) {
    auto it = handlers_.find(sig);
    if (it == handlers_.end()) return;  // removed since the signal came
    HandleRef h = it->second;
    if (h->cancelled) {
      loop_.remove_signal_handler(sig);
      return;
    }
    if (loop_.tracer()) loop_.trace_flat("signal", {{"signal", sig}, {"name", signal_name(sig)}});
    loop_.schedule(std::move(h), "signal");
  }

  EventLoop& loop_;
  PollEntry entry_;
  int rfd_ = -1;
  int wfd_ = -1;
  WakeupSlot* slot_ = nullptr;
  IoHandle<SignalHandlers>* reader_ = nullptr;  // read_from_self, owned by reader_ref_
  HandleRef reader_ref_;
  std::map<int, HandleRef> handlers_;
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
  signal_handlers_.reset();
}

}  // namespace loop

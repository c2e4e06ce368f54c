// Poller: see poller.hpp.
#include "io/poller.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <system_error>
#include <utility>

namespace loop::detail {

namespace {

constexpr std::uint32_t kDirections = EPOLLIN | EPOLLOUT;

// What epoll is asked for `directions` of the entry: an edge-triggered one also wants the
// peer's hang-up (EPOLLRDHUP) and urgent data (EPOLLPRI) reported, to go level-triggered
// (see poller.hpp).
std::uint32_t epoll_mask(const PollEntry& e, std::uint32_t directions) {
  return e.edge ? directions | EPOLLET | EPOLLRDHUP | EPOLLPRI : directions;
}
// Per wait; the rest stay ready for the next one (epoll then reports them before those it just
// reported). 256 as the epoll server of bench/: at 1,000 busy connections it cost about 3 % less
// CPU per request than libuv's 1,024, in interleaved runs (smaller batches, hotter caches).
constexpr std::size_t kMaxEvents = 256;

// An event's data: the fd, and the tag of the registration (0: the wake-up eventfd).
std::uint64_t event_key(int fd, std::uint32_t tag) {
  return static_cast<std::uint32_t>(fd) | (static_cast<std::uint64_t>(tag) << 32);
}

}  // namespace

Poller::Poller() : events_(kMaxEvents) {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw std::system_error(errno, std::system_category(), "epoll_create1");
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    int err = errno;
    ::close(epfd_);
    throw std::system_error(err, std::system_category(), "eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = event_key(wake_fd_, 0);
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    int err = errno;
    ::close(wake_fd_);
    ::close(epfd_);
    throw std::system_error(err, std::system_category(), "epoll_ctl(eventfd)");
  }
}

Poller::~Poller() {
  ::close(wake_fd_);
  ::close(epfd_);
}

void Poller::watch(PollEntry& e, int fd, std::uint32_t events) {
  if (e.added && e.fd != fd) remove(e);  // the owner moved to another fd
  e.fd = fd;
  e.reported_unwatched = false;
  std::uint32_t before = e.wanted;
  e.wanted |= events;
  try {
    if (e.added && (e.registered & events) == events) {
      // Registered already. An edge-triggered entry's edge may have gone by unwatched: it is
      // re-armed (EPOLL_CTL_MOD), so that the next wait reports it if it is ready then, as
      // asyncio's _add_reader (an EPOLL_CTL_ADD) does. Reporting it without asking would run
      // the reader in the next batch even for data that came after that poll (a transport's
      // start() or resume_reading(); tests/differential, diff_streams_sock).
      if (e.edge) control(e, e.registered);
      return;
    }
    control(e, e.registered | e.wanted);
  } catch (...) {
    e.wanted = before;
    throw;
  }
}

void Poller::unwatch(PollEntry& e, std::uint32_t events) {
  e.wanted &= ~events;
}

void Poller::recheck(PollEntry& e, std::uint32_t events) {
  if (!e.added) return;
  if (e.recheck == 0) rechecks_.push_back(&e);
  e.recheck |= events;
}

void Poller::control(PollEntry& e, std::uint32_t events) {
  epoll_event ev{};
  ev.events = epoll_mask(e, events);
  if (e.added) {
    ev.data.u64 = event_key(e.fd, e.tag);
    if (::epoll_ctl(epfd_, EPOLL_CTL_MOD, e.fd, &ev) != 0)
      throw std::system_error(errno, std::system_category(), "epoll_ctl");
    e.registered = events;
    return;
  }
  if (e.fd < 0) throw std::system_error(EBADF, std::system_category(), "epoll_ctl");
  auto slot = static_cast<std::size_t>(e.fd);
  if (slot >= entries_.size()) entries_.resize(slot + 1, nullptr);
  if (entries_[slot] != nullptr)
    throw std::system_error(EEXIST, std::system_category(),
                            "file descriptor " + std::to_string(e.fd) + " is already watched");
  if (++last_tag_ == 0) last_tag_ = 1;
  ev.data.u64 = event_key(e.fd, last_tag_);
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, e.fd, &ev) != 0) {
    // EEXIST with no entry: this file was left registered (its fd closed and the number
    // reused while another process kept the file open); take the registration over.
    if (errno != EEXIST || ::epoll_ctl(epfd_, EPOLL_CTL_MOD, e.fd, &ev) != 0)
      throw std::system_error(errno, std::system_category(), "epoll_ctl");
  }
  entries_[slot] = &e;
  e.poller = this;
  e.tag = last_tag_;
  e.added = true;
  e.registered = events;
}

void Poller::remove(PollEntry& e) noexcept {
  if (e.added) {
    // Fails if the fd was closed first: the kernel dropped the registration with the file, or,
    // if the file lives on elsewhere, its next event finds no entry (see orphaned_).
    epoll_event ev{};
    (void)::epoll_ctl(epfd_, EPOLL_CTL_DEL, e.fd, &ev);
    forget(e);
  }
  e.wanted = 0;
}

void Poller::forget(PollEntry& e) noexcept {
  auto slot = static_cast<std::size_t>(e.fd);
  if (slot < entries_.size() && entries_[slot] == &e) entries_[slot] = nullptr;
  if (e.recheck != 0) {
    e.recheck = 0;
    for (auto& r : rechecks_)
      if (r == &e) r = nullptr;
  }
  e.poller = nullptr;
  e.added = false;
  e.registered = 0;
}

void Poller::rebuild() noexcept {
  orphaned_ = false;
  int fresh = ::epoll_create1(EPOLL_CLOEXEC);
  if (fresh < 0) return;  // keep the old set; tried again at the next orphaned event
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = event_key(wake_fd_, 0);
  if (::epoll_ctl(fresh, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    ::close(fresh);
    return;
  }
  for (PollEntry* e : entries_) {
    if (e == nullptr) continue;
    ev.events = epoll_mask(*e, e->registered);
    ev.data.u64 = event_key(e->fd, e->tag);
    // An entry whose fd is closed already is forgotten: its owner registers again if it
    // watches again.
    if (::epoll_ctl(fresh, EPOLL_CTL_ADD, e->fd, &ev) != 0) forget(*e);
  }
  ::close(epfd_);
  epfd_ = fresh;
}

// epoll_pwait2 takes the timeout in nanoseconds, so a timer is not run up to a millisecond
// late; where the kernel (or a seccomp filter) lacks it, epoll_wait's milliseconds, rounded up
// as asyncio's EpollSelector does (a timer polled for too short a time is found not yet due).
int Poller::epoll_wait_for(double timeout) {
  const int max = static_cast<int>(events_.size());
  if (has_pwait2_) {
    timespec ts{};
    if (timeout >= 0) {
      ts.tv_sec = static_cast<time_t>(timeout);
      ts.tv_nsec = static_cast<long>((timeout - static_cast<double>(ts.tv_sec)) * 1e9);
    }
    int n = ::epoll_pwait2(epfd_, events_.data(), max, timeout < 0 ? nullptr : &ts, nullptr);
    if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return n;
    has_pwait2_ = false;
  }
  int ms = -1;
  if (timeout >= 0) {
    double rounded = std::ceil(timeout * 1000);
    ms = rounded >= static_cast<double>(INT_MAX) ? INT_MAX : static_cast<int>(rounded);
  }
  return ::epoll_wait(epfd_, events_.data(), max, ms);
}

int Poller::wait(double timeout) {
  int n = epoll_wait_for(rechecks_.empty() ? timeout : 0);
  if (n < 0) {
    if (errno == EINTR) return 0;  // a signal: its handler's pipe is reported next time
    throw std::system_error(errno, std::system_category(), "epoll_wait");
  }
  int told = 0;
  for (int i = 0; i < n; ++i) {
    const auto fd = static_cast<int>(events_[i].data.u64 & 0xffffffffu);
    const auto tag = static_cast<std::uint32_t>(events_[i].data.u64 >> 32);
    const std::uint32_t ev = events_[i].events;
    if (tag == 0) {
      drain_wakeups();
      continue;
    }
    auto slot = static_cast<std::size_t>(fd);
    PollEntry* e = slot < entries_.size() ? entries_[slot] : nullptr;
    if (e == nullptr || e->tag != tag) {
      // A registration nobody owns any more. Deleted by fd number when no entry holds that
      // number now (it fails if the fd was closed: the file lives on elsewhere); else, or
      // then, only a new epoll set gets rid of it.
      epoll_event dummy{};
      if (e != nullptr || ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &dummy) != 0) orphaned_ = true;
      continue;
    }
    // selectors.EpollSelector's mapping: an error or hang-up counts for both directions.
    const bool readable = (ev & ~static_cast<std::uint32_t>(EPOLLOUT)) && (e->wanted & EPOLLIN);
    const bool writable = (ev & ~static_cast<std::uint32_t>(EPOLLIN | EPOLLRDHUP | EPOLLPRI)) &&
                          (e->wanted & EPOLLOUT);
    if (e->edge && (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI))) {
      // The peer hung up, an error, or urgent data (a TCP read stops short at its mark, with
      // data queued behind it): level-triggered from now on, so that what is left (the data
      // behind the mark or before the EOF, the EOF itself) is reported until it is read.
      e->edge = false;
      epoll_event lt{};
      lt.events = e->registered;
      lt.data.u64 = event_key(fd, e->tag);
      (void)::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &lt);
    }
    const bool unwatched =
        e->registered != e->wanted && ((ev & kDirections & ~e->wanted) || e->wanted == 0);
    // Reported for a direction nobody watches any more. The first time, it is left as it is:
    // a sock_* wait removes its reader in the reader's callback, and its task reads at the
    // next iteration, after one more poll, then watches the fd again for its next wait.
    if (unwatched && std::exchange(e->reported_unwatched, true)) {
      // Reported again, not watched again since: shrink the registration now
      // (level-triggered, it would be reported at every poll).
      // A failure means the fd was closed under the registration (lazy unwatching kept it):
      // then the entry is forgotten and the registration orphaned.
      e->reported_unwatched = false;
      epoll_event shrink{};
      shrink.events = epoll_mask(*e, e->wanted);
      shrink.data.u64 = event_key(fd, e->tag);
      const int op = e->wanted == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
      if (::epoll_ctl(epfd_, op, fd, &shrink) != 0) {
        orphaned_ = true;
        forget(*e);
        continue;
      }
      if (op == EPOLL_CTL_DEL)
        forget(*e);
      else
        e->registered = e->wanted;
    }
    if (readable || writable) {
      ++told;
      e->watcher->poll_ready(readable, writable);
    }
  }
  told += report_rechecks();
  if (orphaned_) rebuild();
  return told;
}

int Poller::report_rechecks() {
  // Those asked for while these are told wait for the next wait (the owners only queue
  // handles here, which run after it).
  const std::size_t count = rechecks_.size();
  int told = 0;
  for (std::size_t i = 0; i < count; ++i) {
    PollEntry* e = std::exchange(rechecks_[i], nullptr);
    if (e == nullptr) continue;
    const std::uint32_t events = std::exchange(e->recheck, 0u) & e->wanted;
    if (events == 0) continue;
    ++told;
    e->watcher->poll_ready((events & EPOLLIN) != 0, (events & EPOLLOUT) != 0);
  }
  rechecks_.erase(rechecks_.begin(), rechecks_.begin() + static_cast<std::ptrdiff_t>(count));
  return told;
}

void Poller::wake() noexcept {
  std::uint64_t one = 1;
  // EAGAIN means the counter is saturated: a wake-up is pending anyway.
  ssize_t r = ::write(wake_fd_, &one, sizeof one);
  (void)r;
}

void Poller::drain_wakeups() noexcept {
  std::uint64_t count;
  ssize_t r = ::read(wake_fd_, &count, sizeof count);
  (void)r;
  woken_ = true;
}

}  // namespace loop::detail

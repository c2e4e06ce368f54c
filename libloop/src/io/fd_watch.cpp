// add_reader/add_writer: level-triggered fd watching (asyncio's selector semantics) on the
// loop's Poller (io/poller.hpp).
//
// Each direction runs this cycle:
//
//   poll phase: the fd is ready --> dispatch queued (ready batch: runs the callback)
//       ^                                        |
//       +------ still watched after it ----------+
//
// The dispatch is queued in the poll phase, after everything the previous batch scheduled,
// exactly where asyncio's _process_events puts selector events. An fd still ready after its
// callback is reported again by the next poll (level-triggered); nothing is re-armed.
//
// remove_reader/remove_writer keep the FdWatch and its registration when nothing watches the
// fd any more (an idle FdWatch), because the sock_* coroutines add and remove a reader around
// every wait: the Poller then shrinks the registration only if the fd is reported meanwhile.
// The fd may have been closed meanwhile and its number reused, so an idle watch is used
// again only when fstat still shows the same file (device and inode); otherwise it is replaced.
// Whoever else watches an fd first calls release_idle_fd_watch (epoll refuses an fd twice).
#include <sys/stat.h>

#include <cerrno>
#include <memory>
#include <system_error>
#include <unordered_map>

#include "io/poller.hpp"
#include "loop/event_loop.hpp"

namespace loop {

namespace detail {

namespace {

constexpr int kRead = 0;
constexpr int kWrite = 1;

}  // namespace

class FdWatch;

// The persistent handle that runs a direction's callback from the ready queue: one per fd and
// direction, rescheduled for every event (no allocation per event), never queued twice.
class FdDispatch final : public HandleImpl {
 public:
  FdDispatch(std::weak_ptr<FdWatch> watch, int direction)
      : watch_(std::move(watch)), direction_(direction) {
    kind = HandleKind::io;
  }
  void invoke() override;
  std::string callback_name() const override;

 private:
  std::weak_ptr<FdWatch> watch_;
  int direction_;
};

// One watched fd: its Poller entry (the fd is never owned) and the two directions.
class FdWatch final : public PollWatcher, public std::enable_shared_from_this<FdWatch> {
 public:
  FdWatch(EventLoop& loop, int fd, const struct stat& st)
      : loop_(loop), fd_(fd), dev_(st.st_dev), ino_(st.st_ino), entry_(*this) {}
  /// Whether the fd still refers to the file this watch registered.
  bool same_file(const struct stat& st) const { return st.st_dev == dev_ && st.st_ino == ino_; }
  ~FdWatch() { release(); }

  void init() {
    for (int d : {kRead, kWrite}) dir_[d].dispatch = HandleRef(new FdDispatch(weak_from_this(), d));
  }

  /// Gives the fd back to its owner: out of the Poller.
  void release() noexcept { loop_.poller().remove(entry_); }

  /// Installs `cb` for direction d; returns the callback it replaces (null if none). Throws
  /// std::system_error if epoll refuses the fd (the callback is then not installed).
  HandleRef set(int d, HandleRef cb, const void* owner) {
    loop_.poller().watch(entry_, fd_, kEvents[d]);
    dir_[d].owner = owner;
    return std::exchange(dir_[d].callback, std::move(cb));
  }
  HandleRef clear(int d) {
    loop_.poller().unwatch(entry_, kEvents[d]);
    dir_[d].owner = nullptr;
    return std::exchange(dir_[d].callback, HandleRef());
  }
  const void* owner(int d) const { return dir_[d].owner; }
  bool watching() const { return dir_[kRead].callback || dir_[kWrite].callback; }
  const HandleRef& callback(int d) const { return dir_[d].callback; }
  /// The callback a queued dispatch will run, else the current one.
  const HandleRef& queued_or_current(int d) const {
    return dir_[d].queued ? dir_[d].queued : dir_[d].callback;
  }

  void poll_ready(bool readable, bool writable) override {
    if (readable) schedule(kRead);
    if (writable) schedule(kWrite);
  }

  /// The dispatch handle ran: call the callback it was queued for (the fd stays watched).
  void dispatch(int d) {
    auto keep_alive = shared_from_this();  // the callback may remove the watch
    HandleRef cb = std::move(dir_[d].queued);
    // asyncio's _run_once skips a handle cancelled since the poll queued it: removed, or
    // replaced by a new callback, which waits for the next poll.
    if (!cb || cb->cancelled) return;
    // Reported here, with the reader's own handle, as asyncio's context["handle"]: the
    // dispatch handle is the loop's, and one cancelled on the ready queue would never run to
    // clear `queued` (the fd would not be dispatched again). Cancelling the reader's handle
    // removes the reader at the next poll.
    try {
      cb->invoke();
    } catch (...) {
      loop_.report_callback_exception(*cb, std::current_exception());
    }
  }

 private:
  friend class FdDispatch;
  static constexpr std::uint32_t kEvents[2] = {EPOLLIN, EPOLLOUT};
  struct Direction {
    HandleRef callback;  // the user's handle; null: not watched
    HandleRef dispatch;  // FdDispatch
    HandleRef queued;    // the handle the queued dispatch runs; null: not on the ready queue
    const void* owner = nullptr;  // add_fd_watch's tag for `callback`
  };

  // The poll reported the fd: asyncio's _process_events queues the reader's handle itself, or
  // unregisters a reader whose handle was cancelled.
  void schedule(int d) {
    Direction& dir = dir_[d];
    if (!dir.callback || dir.queued) return;
    if (dir.callback->cancelled) {
      (void)(d == kRead ? loop_.remove_reader(fd_) : loop_.remove_writer(fd_));
      return;
    }
    dir.queued = dir.callback;
    dir.dispatch->context = dir.callback->context;
    dir.dispatch->cancelled = false;
    loop_.schedule(dir.dispatch, d == kRead ? "add_reader" : "add_writer");
  }

  EventLoop& loop_;
  int fd_;
  dev_t dev_;
  ino_t ino_;
  PollEntry entry_;
  Direction dir_[2];
};

void FdDispatch::invoke() {
  if (auto w = watch_.lock()) w->dispatch(direction_);
}

std::string FdDispatch::callback_name() const {
  if (auto w = watch_.lock())
    if (const HandleRef& cb = w->queued_or_current(direction_)) return cb->callback_name();
  return "<removed fd callback>";
}

class FdWatchers {
 public:
  ~FdWatchers() { clear(); }
  void clear() {
    for (auto& [fd, w] : map) w->release();
    map.clear();
  }
  std::unordered_map<int, std::shared_ptr<FdWatch>> map;
};

}  // namespace detail

Handle EventLoop::add_fd_watch(int fd, int direction, detail::HandleRef cb, const void* owner) {
  if (debug_) check_thread();
  if (fd < 0) throw std::invalid_argument("Invalid file descriptor: " + std::to_string(fd));
  ensure_fd_no_transport(fd);
  if (!fd_watchers_) fd_watchers_ = std::make_shared<detail::FdWatchers>();
  auto& map = fd_watchers_->map;
  auto it = map.find(fd);
  if (it == map.end() || !it->second->watching()) {
    struct stat st;
    if (::fstat(fd, &st) != 0)
      throw std::system_error(errno, std::system_category(),
                              "cannot watch file descriptor " + std::to_string(fd));
    // epoll refuses regular files and directories with EPERM (asyncio raises PermissionError);
    // said here with the reason, before an idle registration could hide it.
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
      throw std::system_error(EPERM, std::system_category(),
                              "cannot watch file descriptor " + std::to_string(fd) +
                                  " (a regular file or directory is always ready)");
    if (it != map.end() && !it->second->same_file(st)) {
      // An idle watch of a file that was closed since: this fd number is another file now.
      release_idle_fd_watch(fd);
      it = map.end();
    }
    if (it == map.end()) {
      auto w = std::make_shared<detail::FdWatch>(*this, fd, st);
      w->init();
      it = map.emplace(fd, std::move(w)).first;
    }
  }
  Handle result(cb);
  detail::HandleRef old = it->second->set(direction, std::move(cb), owner);
  if (old) old->cancelled = true;  // asyncio cancels the handle it replaces
  if (tracer()) trace(direction == 0 ? "reader_added" : "writer_added", {{"fd", fd}});
  return result;
}

bool EventLoop::remove_fd_watch(int fd, int direction, const void* owner) {
  if (!owner) ensure_fd_no_transport(fd);  // asyncio checks first, closed loop or not
  // asyncio: removing from a closed loop is not an error, it just reports nothing removed.
  if (closed_ || !fd_watchers_) return false;
  if (debug_) check_thread();
  auto& map = fd_watchers_->map;
  auto it = map.find(fd);
  if (it == map.end()) return false;
  if (owner && it->second->owner(direction) != owner) return false;  // replaced or removed
  // The registration stays when nothing is watched any more (see the top of the file).
  detail::HandleRef old = it->second->clear(direction);
  if (!old) return false;
  old->cancelled = true;
  if (tracer()) trace(direction == 0 ? "reader_removed" : "writer_removed", {{"fd", fd}});
  return true;
}

// asyncio's _ensure_fd_no_transport: a transport's fd is the transport's to watch, until it
// is closing.
void EventLoop::ensure_fd_no_transport(int fd) const {
  auto slot = static_cast<std::size_t>(fd);
  if (fd < 0 || slot >= fd_transports_.size()) return;
  const BaseTransport* t = fd_transports_[slot];
  if (t && !t->is_closing())
    throw std::runtime_error("File descriptor " + std::to_string(fd) + " is used by transport " +
                             describe_transport(*t));
}

void EventLoop::set_fd_transport(int fd, const BaseTransport* transport) {
  if (fd < 0) return;
  auto slot = static_cast<std::size_t>(fd);
  if (slot >= fd_transports_.size()) {
    if (!transport) return;
    fd_transports_.resize(slot + 1, nullptr);
  }
  fd_transports_[slot] = transport;
}

bool EventLoop::remove_reader(int fd) {
  return remove_fd_watch(fd, 0);
}
bool EventLoop::remove_writer(int fd) {
  return remove_fd_watch(fd, 1);
}

void EventLoop::release_idle_fd_watch(int fd) {
  if (!fd_watchers_) return;
  auto& map = fd_watchers_->map;
  auto it = map.find(fd);
  if (it == map.end() || it->second->watching()) return;
  it->second->release();
  map.erase(it);
}

void EventLoop::close_fd_watchers() {
  if (fd_watchers_) fd_watchers_->clear();
}

}  // namespace loop

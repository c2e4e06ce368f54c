// add_reader/add_writer: level-triggered fd watching (asyncio's selector semantics) on asio.
//
// asio registers descriptors with epoll edge-triggered. What makes a wait level-triggered is how
// asio arms it: async_wait is not speculative, so every wait re-arms the fd with EPOLL_CTL_MOD,
// and the kernel queues an fd that is already ready at that moment (ep_modify puts a "hot" item
// on the ready list). So each direction runs this cycle:
//
//   async_wait --completion (poll phase)--> dispatch (ready batch: runs the callback)
//       ^                                        |
//       +------ still registered after it -------+
//
// The completion arrives in the next iteration's poll phase: the callback is queued there,
// after everything the previous batch scheduled, exactly where asyncio's _process_events puts
// selector events. An fd still ready after its callback is reported again by the next poll, as
// a level-triggered selector would; no wakeup is lost, and no extra system call checks the fd.
//
// remove_reader/remove_writer keep the fd's registration when nothing watches it any more
// (an idle FdWatch), because the sock_* coroutines add and remove a reader around every wait:
// registering again would cost an fstat, an ioctl, an EPOLL_CTL_ADD and an EPOLL_CTL_DEL each
// time. The fd may have been closed meanwhile and its number reused, so an idle watch is used
// again only when fstat still shows the same file (device and inode); otherwise it is replaced.
// Whoever else hands an fd to asio first calls release_idle_fd_watch (asio refuses an fd twice).
#include <sys/stat.h>

#include <asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <memory>
#include <system_error>
#include <unordered_map>

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

// One watched fd: the asio descriptor (which never owns the fd) and the two directions.
class FdWatch : public std::enable_shared_from_this<FdWatch> {
 public:
  FdWatch(EventLoop& loop, int fd, const struct stat& st)
      : loop_(loop), fd_(fd), dev_(st.st_dev), ino_(st.st_ino), sd_(loop.io_context()) {
    sd_.assign(fd);  // registers with the reactor; throws std::system_error
  }
  /// Whether the fd still refers to the file this watch registered.
  bool same_file(const struct stat& st) const { return st.st_dev == dev_ && st.st_ino == ino_; }
  ~FdWatch() { release(); }

  void init() {
    for (int d : {kRead, kWrite}) dir_[d].dispatch = HandleRef(new FdDispatch(weak_from_this(), d));
  }

  /// Gives the fd back to its owner: asio cancels the waits and deregisters it.
  void release() {
    if (sd_.is_open()) (void)sd_.release();
  }

  /// Installs `cb` for direction d; returns the callback it replaces (null if none).
  HandleRef set(int d, HandleRef cb) {
    Direction& dir = dir_[d];
    HandleRef old = std::exchange(dir.callback, std::move(cb));
    if (dir.callback && !dir.busy) start(d);
    return old;
  }
  HandleRef clear(int d) { return std::exchange(dir_[d].callback, HandleRef()); }
  bool watching() const { return dir_[kRead].callback || dir_[kWrite].callback; }
  const HandleRef& callback(int d) const { return dir_[d].callback; }

  /// The dispatch handle ran: call the callback, then look at the fd again next iteration.
  void dispatch(int d) {
    auto keep_alive = shared_from_this();  // the callback may remove the watch
    Direction& dir = dir_[d];
    HandleRef cb = dir.callback;
    if (!cb || cb->cancelled) {
      // asyncio's _process_events: a cancelled handle unregisters its direction.
      if (cb) (void)(d == kRead ? loop_.remove_reader(fd_) : loop_.remove_writer(fd_));
      dir.busy = false;
      return;
    }
    struct Rearm {
      FdWatch& w;
      int d;
      ~Rearm() { w.start(d); }
    } rearm{*this, d};
    cb->invoke();
  }

 private:
  friend class FdDispatch;
  struct Direction {
    HandleRef callback;  // the user's handle; null: not watched
    HandleRef dispatch;  // FdDispatch
    bool busy = false;   // a wait or the dispatch is pending
  };

  // Arms the wait (see the top of the file: it reports an fd that is ready already).
  void start(int d) {
    Direction& dir = dir_[d];
    if (!dir.callback || !sd_.is_open()) {
      dir.busy = false;
      return;
    }
    dir.busy = true;
    auto type = d == kRead ? asio::posix::descriptor_base::wait_read
                           : asio::posix::descriptor_base::wait_write;
    sd_.async_wait(type, [weak = weak_from_this(), d](const std::error_code& ec) {
      auto w = weak.lock();
      if (!w) return;
      if (ec == asio::error::operation_aborted || !w->dir_[d].callback) {
        w->dir_[d].busy = false;
        return;
      }
      w->schedule(d);  // readiness (or an error the callback will see)
    });
  }

  void schedule(int d) {
    Direction& dir = dir_[d];
    dir.dispatch->context = dir.callback->context;
    dir.dispatch->cancelled = false;
    loop_.schedule(dir.dispatch, d == kRead ? "add_reader" : "add_writer");
  }

  EventLoop& loop_;
  int fd_;
  dev_t dev_;
  ino_t ino_;
  asio::posix::stream_descriptor sd_;
  Direction dir_[2];
};

void FdDispatch::invoke() {
  if (auto w = watch_.lock()) w->dispatch(direction_);
}

std::string FdDispatch::callback_name() const {
  if (auto w = watch_.lock())
    if (const HandleRef& cb = w->callback(direction_)) return cb->callback_name();
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

Handle EventLoop::add_fd_watch(int fd, int direction, detail::HandleRef cb) {
  if (debug_) check_thread();
  if (fd < 0) throw std::invalid_argument("Invalid file descriptor: " + std::to_string(fd));
  if (!fd_watchers_) fd_watchers_ = std::make_shared<detail::FdWatchers>();
  auto& map = fd_watchers_->map;
  auto it = map.find(fd);
  if (it == map.end() || !it->second->watching()) {
    struct stat st;
    if (::fstat(fd, &st) != 0)
      throw std::system_error(errno, std::system_category(),
                              "cannot watch file descriptor " + std::to_string(fd));
    // epoll refuses regular files and directories with EPERM (asyncio raises PermissionError);
    // asio would silently accept them and never report an event.
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
  cb->loop = this;
  Handle result(cb);
  detail::HandleRef old = it->second->set(direction, std::move(cb));
  if (old) old->cancelled = true;  // asyncio cancels the handle it replaces
  if (tracer_) trace(direction == 0 ? "reader_added" : "writer_added", {{"fd", fd}});
  return result;
}

bool EventLoop::remove_fd_watch(int fd, int direction) {
  // asyncio: removing from a closed loop is not an error, it just reports nothing removed.
  if (closed_ || !fd_watchers_) return false;
  if (debug_) check_thread();
  auto& map = fd_watchers_->map;
  auto it = map.find(fd);
  if (it == map.end()) return false;
  // The registration stays when nothing is watched any more (see the top of the file).
  detail::HandleRef old = it->second->clear(direction);
  if (!old) return false;
  old->cancelled = true;
  if (tracer_) trace(direction == 0 ? "reader_removed" : "writer_removed", {{"fd", fd}});
  return true;
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

// Poller: epoll for the connections and the fds of add_reader/add_writer, level-triggered in
// effect (a TCP transport's fd is registered edge-triggered; see below).
//
// asio's reactor registers every descriptor edge-triggered, and a readiness wait (async_wait)
// is not speculative: each one re-arms the descriptor with EPOLL_CTL_MOD. A stream transport
// waits once per read, so every request paid a system call on top of recv and send (3.35 per
// echo request against 2.15 for uvloop and a hand-written epoll server). The Poller keeps an
// fd registered for as long as its owner watches it, as libuv does: a level-triggered epoll
// reports a ready fd at every poll until it is drained, so nothing needs re-arming, and a
// short read may stop reading (more data or an EOF is reported again).
//
// A TCP transport's entry is registered edge-triggered instead (PollEntry::edge): a
// level-triggered fd that was reported is polled again by the next epoll_wait, which finds it
// drained (tcp_poll and sock_poll were 9 % of the echo server's CPU, half of them for that).
// The level-triggered behaviour it relies on is kept by hand: its owner asks for a recheck
// (Poller::recheck) after a read that filled its buffer, the Poller re-arms an fd watched
// again (EPOLL_CTL_MOD: its edge may have gone by unwatched), and an fd reported with a
// hang-up, an error or urgent data goes back to level-triggered (the EOF behind the data, the
// data behind the urgent mark, where a TCP read stops short, are read next). A short read
// means a drained socket only for TCP: a unix stream read also stops after a chunk that
// carried file descriptors, at a MSG_OOB byte, and between writers with SO_PASSCRED, so unix
// sockets stay level-triggered.
//
// asio still runs everything else (accept, pipes, datagrams, signals, child exits): its epoll
// fd is itself watched here, and the loop runs asio's handlers when that fd is readable (see
// asio_nesting.hpp). The loop blocks in one epoll_wait, on this poller.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <vector>

namespace loop::detail {

/// Told which directions of its fd are ready. Runs in the poll phase: it only puts handles on
/// the ready queue, and must not add or remove registrations.
class PollWatcher {
 public:
  virtual void poll_ready(bool readable, bool writable) = 0;

 protected:
  ~PollWatcher() = default;
};

class Poller;

/// An fd's registration: what its owner watches and what epoll holds. Leaves the Poller when
/// destroyed (also when its owner's constructor throws after registering).
struct PollEntry {
  explicit PollEntry(PollWatcher& w) : watcher(&w) {}
  ~PollEntry();
  PollEntry(const PollEntry&) = delete;
  PollEntry& operator=(const PollEntry&) = delete;

  PollWatcher* watcher;
  Poller* poller = nullptr;  // while the fd is in its epoll set
  int fd = -1;
  std::uint32_t wanted = 0;         // EPOLLIN | EPOLLOUT: what the owner watches now
  std::uint32_t registered = 0;     // what epoll holds: a superset (unwatching is lazy)
  std::uint32_t tag = 0;            // this registration's number, in each event's data with fd
  bool added = false;               // the fd is in the epoll set
  bool reported_unwatched = false;  // for a direction nobody watches, since the last watch()
  bool edge = false;                // edge-triggered (a TCP transport; see the top)
  std::uint32_t recheck = 0;        // directions to report at the next wait without epoll
};

class Poller {
 public:
  Poller();
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  /// Watches `events` (EPOLLIN and/or EPOLLOUT) on `fd` as well. A system call only when epoll
  /// does not hold them yet. Throws std::system_error (EPERM for a regular file, EEXIST when
  /// another entry holds the fd, EBADF...).
  void watch(PollEntry& e, int fd, std::uint32_t events);
  /// Stops watching `events`. No system call: epoll keeps them until it has reported one of
  /// them twice with no watch() in between (then the registration shrinks), so that a reader
  /// stopped and started again around each read (the sock_* coroutines) costs nothing.
  void unwatch(PollEntry& e, std::uint32_t events);
  /// Takes the fd out of epoll now: before it is closed or handed to another watcher.
  void remove(PollEntry& e) noexcept;
  /// An edge-triggered entry's owner stopped before the fd was drained (a read filled its
  /// buffer): the next wait reports `events` again (if still watched), without epoll, and
  /// does not sleep. The owner's next read finds the data, or EAGAIN.
  void recheck(PollEntry& e, std::uint32_t events);

  /// Waits at most `timeout` seconds (negative: no limit) and tells each ready entry's
  /// watcher, in the order epoll reports them. Returns the number of entries told.
  int wait(double timeout);
  /// Thread-safe: makes the current (or next) wait return. The eventfd it writes is watched
  /// here; `take_wakeup` tells whether one arrived since the last call.
  void wake() noexcept;
  bool wakeup_pending() const noexcept { return woken_; }
  bool take_wakeup() noexcept {
    bool w = woken_;
    woken_ = false;
    return w;
  }

 private:
  void control(PollEntry& e, std::uint32_t events);
  void drain_wakeups() noexcept;
  void forget(PollEntry& e) noexcept;  // out of entries_, without a system call
  void rebuild() noexcept;
  int report_rechecks();  // tells the owners of rechecks_; returns how many

  int epoll_wait_for(double timeout);

  int epfd_ = -1;
  bool has_pwait2_ = true;  // epoll_pwait2 (Linux 5.11): timeouts finer than a millisecond
  int wake_fd_ = -1;
  bool woken_ = false;
  // By fd, as libuv's loop->watchers: an event for an fd whose entry went away finds no entry
  // (or one with another tag) and is dropped, never a dangling pointer.
  std::vector<PollEntry*> entries_;
  std::uint32_t last_tag_ = 0;
  // A registration epoll keeps for a file whose fd was closed while another process or fd
  // still holds the file: it can no longer be deleted by fd number and, level-triggered, would
  // be reported at every wait. The only way out is a new epoll set (rebuild()).
  bool orphaned_ = false;
  std::vector<epoll_event> events_;
  std::vector<PollEntry*> rechecks_;  // null: an entry removed since it asked
};

inline PollEntry::~PollEntry() {
  if (poller) poller->remove(*this);
}

}  // namespace loop::detail

// The Poller (level-triggered epoll under the connections and add_reader/add_writer), and the
// loop's nesting of asio's reactor in it.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/post.hpp>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <loop/loop.hpp>
#include <string>
#include <system_error>
#include <thread>

#include "io/poller.hpp"

namespace {

using loop::detail::PollEntry;
using loop::detail::Poller;

struct Recorder final : loop::detail::PollWatcher {
  int reads = 0, writes = 0;
  void poll_ready(bool readable, bool writable) override {
    reads += readable;
    writes += writable;
  }
};

struct SocketPair {
  int fd[2];
  SocketPair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd) == 0); }
  ~SocketPair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  void send(const char* s) { REQUIRE(::write(fd[1], s, std::strlen(s)) > 0); }
};

// A Poller, a connected socket pair and an entry for the first socket.
struct OneEntry {
  Poller poller;
  SocketPair sp;
  Recorder r;
  PollEntry e{r};
};

int poller_error(Poller& p, PollEntry& e, int fd, std::uint32_t events) {
  try {
    p.watch(e, fd, events);
  } catch (const std::system_error& err) {
    return err.code().value();
  }
  return 0;
}

}  // namespace

TEST_CASE_METHOD(OneEntry,
                 "Poller reports a ready fd at every wait until it is drained (level-triggered)") {
  poller.watch(e, sp.fd[0], EPOLLIN);
  CHECK(poller.wait(0) == 0);
  sp.send("x");
  CHECK(poller.wait(0) == 1);
  CHECK(poller.wait(0) == 1);  // not read: reported again, nothing re-armed
  CHECK(r.reads == 2);
  char c;
  REQUIRE(::read(sp.fd[0], &c, 1) == 1);
  CHECK(poller.wait(0) == 0);
  CHECK(r.writes == 0);
  poller.remove(e);
}

TEST_CASE_METHOD(OneEntry,
                 "Poller unwatch costs nothing until the fd is reported twice, then shrinks the "
                 "registration") {
  poller.watch(e, sp.fd[0], EPOLLIN);
  poller.unwatch(e, EPOLLIN);
  CHECK(e.added);
  CHECK(e.registered == EPOLLIN);  // still in epoll: watching again needs no system call
  poller.watch(e, sp.fd[0], EPOLLIN);
  poller.unwatch(e, EPOLLIN);
  sp.send("x");
  CHECK(poller.wait(0) == 0);  // nobody watches: not told
  CHECK(e.added);              // once is forgiven (a sock_* task reads and watches again)
  CHECK(poller.wait(0) == 0);
  CHECK_FALSE(e.added);  // twice: taken out of epoll, else it would be reported forever
  CHECK(poller.wait(0) == 0);
  poller.watch(e, sp.fd[0], EPOLLIN);
  CHECK(poller.wait(0) == 1);
  CHECK(r.reads == 1);
  poller.remove(e);
}

// The sock_* cycle: the reader's callback removes the reader, one poll reports the fd (its
// data is not read yet), the task reads and watches again: no system call for the watch.
TEST_CASE_METHOD(OneEntry, "Poller keeps an fd reported once unwatched and then watched again") {
  poller.watch(e, sp.fd[0], EPOLLIN);
  for (int round = 0; round < 3; ++round) {
    sp.send("x");
    CHECK(poller.wait(0) == 1);
    poller.unwatch(e, EPOLLIN);
    CHECK(poller.wait(0) == 0);  // still readable, not told
    char c;
    REQUIRE(::read(sp.fd[0], &c, 1) == 1);
    CHECK(e.registered == EPOLLIN);
    poller.watch(e, sp.fd[0], EPOLLIN);
    CHECK(e.registered == EPOLLIN);
  }
  CHECK(r.reads == 3);
  // The flag is cleared by watching again: one report unwatched is forgiven once more.
  poller.unwatch(e, EPOLLIN);
  sp.send("y");
  CHECK(poller.wait(0) == 0);
  CHECK(e.added);
  CHECK(poller.wait(0) == 0);
  CHECK_FALSE(e.added);
  poller.remove(e);
}

TEST_CASE_METHOD(OneEntry, "Poller keeps a watched direction when an unwatched one is reported") {
  poller.watch(e, sp.fd[0], EPOLLIN | EPOLLOUT);
  poller.unwatch(e, EPOLLOUT);
  CHECK(poller.wait(0) == 0);  // writable, but only reading is watched
  CHECK(poller.wait(0) == 0);  // the second report shrinks the registration
  CHECK(e.registered == EPOLLIN);
  sp.send("x");
  CHECK(poller.wait(0) == 1);
  CHECK(r.reads == 1);
  CHECK(r.writes == 0);
  poller.remove(e);
}

TEST_CASE_METHOD(OneEntry,
                 "Poller tells a reader about a hang-up as asyncio's EpollSelector does") {
  poller.watch(e, sp.fd[0], EPOLLIN);
  ::close(sp.fd[1]);
  sp.fd[1] = -1;
  CHECK(poller.wait(0) == 1);
  CHECK(r.reads == 1);
  CHECK(r.writes == 0);  // writing is not watched
  poller.remove(e);
}

// A stream transport's entry is edge-triggered; what level-triggering gave is kept by hand.
TEST_CASE_METHOD(OneEntry, "Poller edge-triggered entry: reported once per arrival") {
  e.edge = true;
  poller.watch(e, sp.fd[0], EPOLLIN);
  sp.send("x");
  CHECK(poller.wait(0) == 1);
  CHECK(poller.wait(0) == 0);  // not read, but no new data: not reported again
  sp.send("y");
  CHECK(poller.wait(0) == 1);  // new data: a new edge
  CHECK(r.reads == 2);
  poller.remove(e);
}

TEST_CASE_METHOD(OneEntry, "Poller edge-triggered entry: a recheck reports it at the next wait") {
  e.edge = true;
  poller.watch(e, sp.fd[0], EPOLLIN);
  sp.send("xy");
  CHECK(poller.wait(0) == 1);
  poller.recheck(e, EPOLLIN);  // the owner read one byte of two: its buffer was full
  auto t0 = std::chrono::steady_clock::now();
  CHECK(poller.wait(5.0) == 1);  // at once, without epoll's help
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  CHECK(poller.wait(0) == 0);  // asked once, told once
  CHECK(r.reads == 2);
  // A recheck of a direction nobody watches by then tells nobody; nor one of a removed entry.
  poller.recheck(e, EPOLLIN);
  poller.unwatch(e, EPOLLIN);
  CHECK(poller.wait(0) == 0);
  poller.watch(e, sp.fd[0], EPOLLIN);
  CHECK(poller.wait(0) == 1);  // watched again without a system call: rechecked (below)
  poller.recheck(e, EPOLLIN);
  poller.remove(e);
  CHECK(poller.wait(0) == 0);
  CHECK(r.reads == 3);
}

TEST_CASE_METHOD(OneEntry,
                 "Poller edge-triggered entry: watched again without a system call, rechecked") {
  // The edge passes while nobody watches (a paused reader); the registration is kept, so
  // watching again makes no epoll_ctl that would re-poll the fd: the Poller rechecks it.
  e.edge = true;
  poller.watch(e, sp.fd[0], EPOLLIN);
  poller.unwatch(e, EPOLLIN);
  sp.send("x");
  CHECK(poller.wait(0) == 0);  // the edge, unwatched
  CHECK(e.registered == EPOLLIN);
  poller.watch(e, sp.fd[0], EPOLLIN);
  CHECK(poller.wait(0) == 1);
  CHECK(r.reads == 1);
  poller.remove(e);
}

TEST_CASE_METHOD(OneEntry,
                 "Poller edge-triggered entry: a hang-up makes it level-triggered until read") {
  // Data and the EOF arrive together: one edge. The owner reads the data (a short read); the
  // EOF must still be reported, or the connection would never see it.
  e.edge = true;
  poller.watch(e, sp.fd[0], EPOLLIN);
  sp.send("last words");
  ::shutdown(sp.fd[1], SHUT_WR);
  CHECK(poller.wait(0) == 1);
  CHECK_FALSE(e.edge);
  char buf[64];
  REQUIRE(::read(sp.fd[0], buf, sizeof buf) == 10);
  CHECK(poller.wait(0) == 1);  // the EOF
  CHECK(poller.wait(0) == 1);  // and again, level-triggered, until the owner stops
  CHECK(r.reads == 3);
  poller.remove(e);
}

TEST_CASE("Poller refuses an fd another entry holds, a regular file and a closed fd") {
  Poller poller;
  SocketPair sp;
  Recorder r1, r2, r3, r4;
  PollEntry a(r1), b(r2), c(r3), d(r4);
  poller.watch(a, sp.fd[0], EPOLLIN);
  CHECK(poller_error(poller, b, sp.fd[0], EPOLLOUT) == EEXIST);
  CHECK_FALSE(b.added);
  CHECK(b.wanted == 0);  // a refused watch leaves nothing behind

  char path[] = "/tmp/loop-poller-XXXXXX";
  int file = ::mkstemp(path);
  REQUIRE(file >= 0);
  ::unlink(path);
  CHECK(poller_error(poller, c, file, EPOLLIN) == EPERM);
  ::close(file);
  CHECK(poller_error(poller, d, 1 << 20, EPOLLIN) == EBADF);
  poller.remove(a);
  CHECK_FALSE(a.added);
  poller.watch(b, sp.fd[0], EPOLLOUT);  // free again
  CHECK(poller.wait(0) == 1);
  CHECK(r2.writes == 1);
  poller.remove(b);
}

TEST_CASE("A PollEntry destroyed while registered leaves the Poller") {
  // As when a transport's constructor throws after registering its socket: no event may
  // reach the destroyed entry, and the fd is free for another.
  Poller poller;
  SocketPair sp;
  Recorder r1, r2;
  {
    PollEntry gone(r1);
    poller.watch(gone, sp.fd[0], EPOLLIN);
  }
  sp.send("x");
  CHECK(poller.wait(0) == 0);
  PollEntry e(r2);
  poller.watch(e, sp.fd[0], EPOLLIN);
  CHECK(poller.wait(0) == 1);
  CHECK(r1.reads == 0);
  CHECK(r2.reads == 1);
}

TEST_CASE("Poller gets rid of a registration whose fd was closed while the file lives on") {
  // remove_reader keeps the registration (lazy); the user then closes the fd while a dup (or
  // a child process) keeps the socket open. epoll can no longer delete it by fd number, and
  // level-triggered it would make every wait return at once: the Poller rebuilds its set.
  Poller poller;
  SocketPair sp;
  int keep = ::dup(sp.fd[0]);
  REQUIRE(keep >= 0);
  Recorder r;
  PollEntry e(r);
  poller.watch(e, sp.fd[0], EPOLLIN);
  poller.unwatch(e, EPOLLIN);
  ::close(sp.fd[0]);
  sp.fd[0] = -1;
  sp.send("x");                // the file (still open as `keep`) is readable now
  CHECK(poller.wait(0) == 0);  // reported once, to nobody, and forgiven
  CHECK(poller.wait(0) == 0);  // reported twice: the shrink fails, the set is rebuilt
  auto t0 = std::chrono::steady_clock::now();
  CHECK(poller.wait(0.05) == 0);  // and not again: the wait lasts its timeout
  std::chrono::duration<double> waited = std::chrono::steady_clock::now() - t0;
  CHECK(waited.count() >= 0.05);
  CHECK(r.reads == 0);
  // The Poller still works after the rebuild.
  SocketPair other;
  Recorder r2;
  PollEntry e2(r2);
  poller.watch(e2, other.fd[0], EPOLLIN);
  other.send("y");
  CHECK(poller.wait(0) == 1);
  CHECK(r2.reads == 1);
  ::close(keep);
}

TEST_CASE("Poller waits its whole timeout, fractions of a millisecond included") {
  // A timer polled for too short a time would be found not yet due and polled for again.
  Poller poller;
  for (double timeout : {0.0005, 0.0123}) {
    auto t0 = std::chrono::steady_clock::now();
    CHECK(poller.wait(timeout) == 0);
    std::chrono::duration<double> waited = std::chrono::steady_clock::now() - t0;
    CHECK(waited.count() >= timeout);
  }
}

TEST_CASE("Poller wake returns a blocked wait from another thread") {
  Poller poller;
  auto t0 = std::chrono::steady_clock::now();
  std::thread waker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    poller.wake();
  });
  CHECK(poller.wait(10.0) == 0);
  waker.join();
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK(poller.take_wakeup());
  CHECK_FALSE(poller.take_wakeup());  // once per wake-up
}

TEST_CASE("The loop runs an asio handler posted from its own thread while it was not polling") {
  // asio interrupts its reactor only while a thread blocks in it; the loop blocks in its own
  // epoll, so a handler posted from a callback must still end that poll (asio_nesting.hpp).
  loop::EventLoop lp;
  bool ran = false, timed_out = false;
  lp.call_soon([&] {
    asio::post(lp.io_context(), [&] {
      ran = true;
      lp.stop();
    });
  });
  auto guard = lp.call_later(5, [&] {
    timed_out = true;
    lp.stop();
  });
  lp.run_forever();
  CHECK(ran);
  CHECK_FALSE(timed_out);
  // Twice: the flag asio resets after each of its polls is set again.
  ran = false;
  lp.call_soon([&] {
    asio::post(lp.io_context(), [&] {
      ran = true;
      lp.stop();
    });
  });
  lp.run_forever();
  guard.cancel();
  CHECK(ran);
  CHECK_FALSE(timed_out);
  lp.close();
}

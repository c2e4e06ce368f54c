// add_reader / add_writer / remove_reader / remove_writer: level-triggered, as asyncio's
// selector loop (each iteration in which the fd is ready runs the callback once).
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <loop/loop.hpp>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "collecting_tracer.hpp"
#include "io_test_support.hpp"

namespace {

// One iteration: stop() before run_forever polls once with a zero timeout and runs one batch.
void run_iterations(loop::EventLoop& lp, int n) {
  for (int i = 0; i < n; ++i) {
    lp.stop();
    lp.run_forever();
  }
}

// Runs until stop(), failing after `seconds` instead of hanging.
void run_bounded(loop::EventLoop& lp, double seconds = 5) {
  bool timed_out = false;
  auto guard = lp.call_later(seconds, [&] {
    timed_out = true;
    lp.stop();
  });
  lp.run_forever();
  guard.cancel();
  REQUIRE_FALSE(timed_out);
}

struct SocketPair {
  int a = -1, b = -1;
  SocketPair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
    a = fds[0];
    b = fds[1];
  }
  ~SocketPair() {
    ::close(a);
    ::close(b);
  }
};

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
  }
};

std::string drain(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace

TEST_CASE("add_reader on a socketpair is level-triggered: unread data fires every iteration") {
  loop::EventLoop lp;
  SocketPair sp;
  int calls = 0;
  lp.add_reader(sp.a, [&] { ++calls; });
  run_iterations(lp, 3);
  CHECK(calls == 0);  // nothing to read yet
  REQUIRE(::write(sp.b, "abc", 3) == 3);
  run_iterations(lp, 5);
  CHECK(calls == 5);  // never read: ready in each of the 5 iterations (asyncio does the same)
  CHECK(drain(sp.a) == "abc");
  run_iterations(lp, 5);
  CHECK(calls == 5);  // drained: the reader waits again
  REQUIRE(lp.remove_reader(sp.a));
  lp.close();
}

TEST_CASE("more fds ready than one poll returns: each reader runs in turn, none starved") {
  // The Poller asks epoll for a bounded number of events per wait (256); the others stay ready
  // and epoll reports them at the next wait (it queues a level-triggered fd it reported behind
  // the others). 400 pairs: 800 fds, within the usual soft limit of 1,024.
  loop::EventLoop lp;
  constexpr int kPairs = 400;
  std::vector<std::unique_ptr<SocketPair>> pairs;
  std::vector<int> calls(kPairs, 0);
  for (int i = 0; i < kPairs; ++i) {
    pairs.push_back(std::make_unique<SocketPair>());
    REQUIRE(::write(pairs.back()->b, "x", 1) == 1);  // never read: ready in every poll
    lp.add_reader(pairs.back()->a, [&calls, i] { ++calls[i]; });
  }
  for (int iteration = 0; iteration < 6; ++iteration) {
    run_iterations(lp, 1);
    auto [lo, hi] = std::minmax_element(calls.begin(), calls.end());
    INFO("iteration " << iteration);
    CHECK(*hi - *lo <= 1);  // round robin: nobody runs twice while another waits
  }
  CHECK(*std::min_element(calls.begin(), calls.end()) >= 1);
  for (auto& p : pairs) lp.remove_reader(p->a);
  lp.close();
}

TEST_CASE("add_reader on a pipe wakes a loop sleeping in its poll") {
  loop::EventLoop lp;
  Pipe p;
  std::string got;
  lp.add_reader(p.r, [&] {
    got += drain(p.r);
    if (got.size() >= 5) {
      lp.remove_reader(p.r);
      lp.stop();
    }
  });
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    (void)::write(p.w, "hello", 5);
  });
  run_bounded(lp);
  writer.join();
  CHECK(got == "hello");
  CHECK_FALSE(lp.remove_reader(p.r));
  lp.close();
}

TEST_CASE("add_reader on a FIFO, and EOF keeps the reader ready") {
  char dir[] = "/tmp/libloop-fifo-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  std::string path = std::string(dir) + "/fifo";
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  int r = ::open(path.c_str(), O_RDONLY | O_NONBLOCK);
  REQUIRE(r >= 0);
  int w = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
  REQUIRE(w >= 0);

  loop::EventLoop lp;
  std::string got;
  int eof_calls = 0;
  lp.add_reader(r, [&] {
    char buf[64];
    ssize_t n = ::read(r, buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<std::size_t>(n));
    if (n == 0) ++eof_calls;  // the writer closed: readable (EOF) in every iteration
  });
  REQUIRE(::write(w, "fifo!", 5) == 5);
  run_iterations(lp, 2);
  CHECK(got == "fifo!");
  ::close(w);
  run_iterations(lp, 3);
  CHECK(eof_calls == 3);
  CHECK(lp.remove_reader(r));
  lp.close();
  ::close(r);
  ::unlink(path.c_str());
  ::rmdir(dir);
}

TEST_CASE("add_reader on a tty (a pseudo-terminal)") {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) {
    WARN("no pseudo-terminals here: skipped");
    return;
  }
  REQUIRE(::grantpt(master) == 0);
  REQUIRE(::unlockpt(master) == 0);
  int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_NONBLOCK);
  REQUIRE(slave >= 0);
  loop::EventLoop lp;
  std::string got;
  lp.add_reader(slave, [&] {
    got += drain(slave);
    if (got.find('\n') != std::string::npos) lp.stop();
  });
  REQUIRE(::write(master, "tty line\n", 9) == 9);
  run_bounded(lp);
  CHECK(got == "tty line\n");
  CHECK(lp.remove_reader(slave));
  lp.close();
  ::close(slave);
  ::close(master);
}

TEST_CASE("add_writer fires each iteration while writable, until removed") {
  loop::EventLoop lp;
  SocketPair sp;
  int calls = 0;
  lp.add_writer(sp.a, [&] { ++calls; });
  run_iterations(lp, 4);
  CHECK(calls == 4);
  CHECK(lp.remove_writer(sp.a));
  run_iterations(lp, 3);
  CHECK(calls == 4);
  CHECK_FALSE(lp.remove_writer(sp.a));
  lp.close();
}

TEST_CASE("add_writer on a full socket waits until the peer reads") {
  loop::EventLoop lp;
  SocketPair sp;
  std::string chunk(65536, 'x');
  std::size_t filled = 0;
  for (;;) {
    ssize_t n = ::send(sp.a, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n < 0) break;
    filled += static_cast<std::size_t>(n);
  }
  REQUIRE(errno == EAGAIN);
  int calls = 0;
  lp.add_writer(sp.a, [&] {
    ++calls;
    lp.remove_writer(sp.a);
    lp.stop();
  });
  run_iterations(lp, 3);
  CHECK(calls == 0);  // full: not writable
  lp.call_later(0.02, [&] { drain(sp.b); });
  run_bounded(lp);
  CHECK(calls == 1);
  CHECK(filled > 0);
  lp.close();
}

TEST_CASE("remove_reader and remove_writer return whether something was registered") {
  loop::EventLoop lp;
  SocketPair sp;
  CHECK_FALSE(lp.remove_reader(sp.a));
  CHECK_FALSE(lp.remove_writer(sp.a));
  lp.add_reader(sp.a, [] {});
  lp.add_writer(sp.a, [] {});
  CHECK_FALSE(lp.remove_reader(sp.b));
  CHECK(lp.remove_writer(sp.a));
  CHECK_FALSE(lp.remove_writer(sp.a));
  CHECK(lp.remove_reader(sp.a));
  CHECK_FALSE(lp.remove_reader(sp.a));
  lp.close();
  // asyncio: after close nothing is registered and removing is not an error.
  CHECK_FALSE(lp.remove_reader(sp.a));
}

TEST_CASE("reader and writer on the same fd are independent") {
  loop::EventLoop lp;
  SocketPair sp;
  int reads = 0, writes = 0;
  lp.add_reader(sp.a, [&] { ++reads; });
  lp.add_writer(sp.a, [&] { ++writes; });
  run_iterations(lp, 2);
  CHECK(reads == 0);
  CHECK(writes == 2);
  REQUIRE(::write(sp.b, "z", 1) == 1);
  CHECK(lp.remove_writer(sp.a));
  run_iterations(lp, 2);
  CHECK(reads == 2);
  CHECK(writes == 2);
  CHECK(lp.remove_reader(sp.a));
  lp.close();
}

TEST_CASE("re-adding a reader replaces the callback and cancels the old handle") {
  loop::EventLoop lp;
  SocketPair sp;
  int first = 0, second = 0;
  loop::Handle h1 = lp.add_reader(sp.a, [&] { ++first; });
  REQUIRE(::write(sp.b, "x", 1) == 1);
  run_iterations(lp, 1);
  CHECK(first == 1);
  loop::Handle h2 = lp.add_reader(
      sp.a, [&](int n) { second += n; }, 10);
  CHECK(h1.cancelled());
  CHECK_FALSE(h2.cancelled());
  run_iterations(lp, 2);
  CHECK(first == 1);
  CHECK(second == 20);
  CHECK(lp.remove_reader(sp.a));
  CHECK(h2.cancelled());
  lp.close();
}

TEST_CASE("a reader replaced after the poll reported its fd waits for the next poll") {
  // asyncio queues the reader's handle itself; remove_reader cancels it, so the queued handle
  // is skipped, and the new reader runs only when a later poll reports the fd:
  //   loop.add_reader(fd, cb1); peer.send(b"x")
  //   loop.call_soon(swap); loop.call_soon(loop.stop); loop.run_forever()  # ['swap']
  //   loop.call_soon(loop.stop); loop.run_forever()                        # + 'cb2'
  loop::EventLoop lp;
  SocketPair sp;
  std::vector<std::string> log;
  lp.add_reader(sp.a, [&] { log.push_back("cb1"); });
  REQUIRE(::write(sp.b, "x", 1) == 1);
  lp.call_soon([&] {
    lp.remove_reader(sp.a);
    lp.add_reader(sp.a, [&] { log.push_back("cb2"); });
    log.push_back("swap");
  });
  run_iterations(lp, 1);
  CHECK(log == std::vector<std::string>{"swap"});
  run_iterations(lp, 1);
  CHECK(log == std::vector<std::string>{"swap", "cb2"});
  CHECK(lp.remove_reader(sp.a));
  lp.close();
}

TEST_CASE("cancelling the Handle add_reader returned unregisters the reader") {
  loop::EventLoop lp;
  SocketPair sp;
  int calls = 0;
  loop::Handle h = lp.add_reader(sp.a, [&] { ++calls; });
  REQUIRE(::write(sp.b, "x", 1) == 1);
  run_iterations(lp, 1);
  CHECK(calls == 1);
  h.cancel();
  run_iterations(lp, 3);
  CHECK(calls == 1);
  CHECK_FALSE(lp.remove_reader(sp.a));  // asyncio's _process_events removed it
  lp.close();
}

TEST_CASE("a reader can remove itself, and one that throws keeps being watched") {
  loop::EventLoop lp;
  lp.set_exception_handler([](loop::EventLoop&, const loop::ExceptionContext&) {});
  SocketPair sp;
  int self_removing = 0, throwing = 0;
  lp.add_reader(sp.a, [&] {
    ++self_removing;
    lp.remove_reader(sp.a);
  });
  lp.add_reader(sp.b, [&] {
    ++throwing;
    throw std::runtime_error("boom");
  });
  REQUIRE(::write(sp.b, "x", 1) == 1);
  REQUIRE(::write(sp.a, "y", 1) == 1);
  run_iterations(lp, 3);
  CHECK(self_removing == 1);
  CHECK(throwing == 3);
  CHECK(lp.remove_reader(sp.b));
  lp.close();
}

// asyncio's context["handle"] for a reader that raises is the reader's Handle; cancelling it
// there removes the reader at the next poll. CPython 3.11, the same steps: 1 call, and
// remove_reader then returns False.
TEST_CASE("a reader that raises is reported with its own handle, which can cancel it") {
  loop::EventLoop lp;
  SocketPair sp;
  int calls = 0;
  std::string message;
  lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& ctx) {
    message = ctx.message;
    REQUIRE(ctx.handle);
    loop::Handle h = *ctx.handle;
    h.cancel();
  });
  loop::Handle reader = lp.add_reader(sp.a, loop::named("raising_reader", [&] {
                                        ++calls;
                                        throw std::runtime_error("boom");
                                      }));
  REQUIRE(::write(sp.b, "x", 1) == 1);  // never read: the fd stays ready
  run_iterations(lp, 4);
  CHECK(calls == 1);
  CHECK(message == "Exception in callback raising_reader()");
  CHECK(reader.cancelled());
  CHECK_FALSE(lp.remove_reader(sp.a));  // removed at the next poll
  lp.close();
}

TEST_CASE("a regular file, a bad fd and a closed fd are refused clearly") {
  loop::EventLoop lp;
  char path[] = "/tmp/libloop-regular-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  // Python: loop.add_reader(open(path).fileno(), cb) -> PermissionError [Errno 1] (EPERM).
  try {
    lp.add_reader(fd, [] {});
    FAIL("a regular file was accepted");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EPERM);
  }
  CHECK_FALSE(lp.remove_reader(fd));
  ::close(fd);
  ::unlink(path);
  CHECK_THROWS_AS(lp.add_reader(-1, [] {}), std::invalid_argument);
  try {
    lp.add_writer(fd, [] {});  // closed now
    FAIL("a closed fd was accepted");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EBADF);
  }
  lp.close();
  SocketPair sp;
  CHECK_THROWS_AS(lp.add_reader(sp.a, [] {}), std::runtime_error);  // closed loop
}

TEST_CASE("reader callbacks join the ready queue after the callbacks already there") {
  loop::EventLoop lp;
  SocketPair sp;
  std::vector<std::string> order;
  REQUIRE(::write(sp.b, "x", 1) == 1);
  lp.call_soon([&] { order.push_back("soon"); });
  lp.add_reader(sp.a, [&] {
    order.push_back("reader");
    lp.remove_reader(sp.a);
  });
  run_iterations(lp, 2);
  // asyncio: the selector's events join the ready queue after what is already there.
  REQUIRE(order.size() == 2);
  CHECK(order[0] == "soon");
  CHECK(order[1] == "reader");
  lp.close();
}

TEST_CASE("reader/writer added and removed are traced, in debug mode too") {
  loop::EventLoop lp;
  lp.set_debug(true);
  auto rec = std::make_shared<test::CollectingTracer>();
  lp.set_tracer(rec);
  SocketPair sp;
  int calls = 0;
  lp.add_reader(sp.a, loop::named("on_readable", [&] {
                  ++calls;
                  drain(sp.a);
                }));
  lp.add_writer(sp.a, [] {});
  REQUIRE(::write(sp.b, "q", 1) == 1);
  run_iterations(lp, 2);
  CHECK(calls == 1);
  CHECK(lp.remove_reader(sp.a));
  CHECK(lp.remove_writer(sp.a));
  std::vector<std::string> evs;
  bool callback_named = false;
  for (auto& r : rec->records) {
    std::string ev = r["ev"];
    if (ev.find("reader_") == 0 || ev.find("writer_") == 0) {
      CHECK(r["fd"] == sp.a);
      evs.push_back(ev);
    }
    if (ev == "callback" && r["name"] == "on_readable" && r["kind"] == "io") callback_named = true;
  }
  CHECK(evs == std::vector<std::string>{"reader_added", "writer_added", "reader_removed",
                                        "writer_removed"});
  CHECK(callback_named);
  lp.close();
}

TEST_CASE("a removed reader's fd closed and its number reused: the new file is watched") {
  // remove_reader keeps the fd's registration for the next add_reader; closing the fd and
  // getting the same number for another socket must not leave the new one unwatched.
  loop::EventLoop lp;
  auto first = std::make_unique<SocketPair>();
  int fd = first->a;
  lp.add_reader(fd, [] {});
  REQUIRE(lp.remove_reader(fd));
  first.reset();  // closes both ends: fd's number is free again
  SocketPair second;
  int reused = second.a == fd ? second.a : second.b == fd ? second.b : -1;
  REQUIRE(reused == fd);  // the lowest free numbers come back
  int other = reused == second.a ? second.b : second.a;
  std::string got;
  lp.add_reader(reused, [&] {
    got = drain(reused);
    lp.stop();
  });
  REQUIRE(::write(other, "hi", 2) == 2);
  run_bounded(lp);
  CHECK(got == "hi");
  lp.remove_reader(reused);
  lp.close();
}

TEST_CASE("an fd add_writer watched before can become a transport's (create_connection sock=)") {
  // asyncio's pattern: sock_connect (which waits with add_writer), then hand the socket over.
  loop::EventLoop lp;
  loop::SocketAddress bound;
  iotest::Fd listener = iotest::listener(loop::SocketAddress::from_ip("127.0.0.1", 0), &bound);
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);  // the transport will own it
  auto main = [&]() -> loop::Coroutine<std::string> {
    co_await lp.sock_connect(s, bound);
    loop::ConnectionOptions opts;
    opts.sock = s;
    auto factory = [] { return std::make_shared<loop::Protocol>(); };
    auto [t, p] = co_await lp.create_connection(factory, opts);
    std::string peer =
        std::any_cast<loop::SocketAddress>(t->get_extra_info("peername")).to_string();
    t->close();
    co_return peer;
  };
  CHECK(lp.run_until_complete(main()) == bound.to_string());
  lp.close();
}

TEST_CASE("a transport's fd is refused by add_reader/add_writer/remove_reader/remove_writer") {
  // asyncio's _ensure_fd_no_transport: RuntimeError('File descriptor N is used by transport').
  loop::EventLoop lp;
  loop::SocketAddress bound;
  iotest::Fd listener = iotest::listener(loop::SocketAddress::from_ip("127.0.0.1", 0), &bound);
  auto main = [&]() -> loop::Coroutine<void> {
    auto factory = [] { return std::make_shared<loop::Protocol>(); };
    auto [t, p] = co_await lp.create_connection(factory, "127.0.0.1", bound.port());
    int fd = *t->extra<int>("socket");
    const std::string msg = "File descriptor " + std::to_string(fd) + " is used by transport <";
    CHECK_THROWS_WITH(lp.add_reader(fd, [] {}), Catch::StartsWith(msg));
    CHECK_THROWS_WITH(lp.add_writer(fd, [] {}), Catch::StartsWith(msg));
    CHECK_THROWS_WITH(lp.remove_reader(fd), Catch::StartsWith(msg));
    CHECK_THROWS_WITH(lp.remove_writer(fd), Catch::StartsWith(msg));
    // Paused, with data arriving that nobody reads: the poller lets the idle registration go
    // after a few polls, but the fd is still the transport's.
    t->pause_reading();
    iotest::Fd peer(::accept(listener, nullptr, nullptr));
    REQUIRE(::write(peer, "x", 1) == 1);
    for (int i = 0; i < 5; ++i) {
      co_await loop::sleep(0.01);
      REQUIRE(::write(peer, "y", 1) == 1);
    }
    CHECK_THROWS_WITH(lp.add_reader(fd, [] {}), Catch::StartsWith(msg));
    t->resume_reading();
    CHECK_FALSE(t->is_closing());
    t->close();
  };
  lp.run_until_complete(main());
  lp.close();
}

// sock_recv, sock_recv_into, sock_sendall, sock_connect, sock_accept against real peers.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <loop/loop.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "collecting_tracer.hpp"
#include "io_test_support.hpp"

using iotest::Fd;

namespace {

loop::Coroutine<std::string> recv_exactly(loop::EventLoop& lp, int sock, std::size_t n) {
  std::string got;
  while (got.size() < n) {
    std::string part = co_await lp.sock_recv(sock, n - got.size());
    if (part.empty()) break;  // EOF
    got += part;
  }
  co_return got;
}

loop::Coroutine<std::string> echo_round_trip(loop::EventLoop& lp, unsigned short port,
                                             std::string data) {
  Fd s = iotest::stream_socket(AF_INET);
  co_await lp.sock_connect(s, loop::SocketAddress::from_ip("127.0.0.1", port));
  // Send and receive at once: the echo would fill both socket buffers otherwise.
  auto sender = lp.create_task(lp.sock_sendall(s, data));
  std::string back = co_await recv_exactly(lp, s, data.size());
  co_await sender;
  co_return back;
}

struct Pair {
  Fd server_side, client_side;
  loop::SocketAddress peer;
};

loop::Coroutine<Pair> connect_pair(loop::EventLoop& lp, const loop::SocketAddress& listen_on) {
  loop::SocketAddress bound;
  Fd lst = iotest::listener(listen_on, &bound);
  Fd client = iotest::stream_socket(bound.family());
  auto accepting = lp.create_task(lp.sock_accept(lst));
  co_await lp.sock_connect(client, bound);
  auto [conn, peer] = co_await accepting;
  co_return Pair{Fd(conn), std::move(client), peer};
}

}  // namespace

TEST_CASE("sock_connect/sock_sendall/sock_recv against a Python asyncio echo server") {
  iotest::PythonPeer peer(iotest::kPythonEchoServer);
  std::string port = peer.first_line();
  REQUIRE_FALSE(port.empty());
  loop::EventLoop lp;
  std::string data = iotest::pattern(2 * 1024 * 1024);
  std::string back = lp.run_until_complete(
      echo_round_trip(lp, static_cast<unsigned short>(std::stoi(port)), data));
  CHECK(back.size() == data.size());
  CHECK(back == data);
  lp.close();
}

loop::Coroutine<void> same_loop_exchange(loop::EventLoop& lp) {
  Pair p = co_await connect_pair(lp, loop::SocketAddress::from_ip("127.0.0.1", 0));
  CHECK(p.peer.host() == "127.0.0.1");
  co_await lp.sock_sendall(p.client_side, "ping");
  char buf[16];
  std::size_t n = co_await lp.sock_recv_into(p.server_side, std::span<char>(buf, sizeof buf));
  CHECK(std::string(buf, n) == "ping");
  ::shutdown(p.server_side, SHUT_WR);
  std::string eof = co_await lp.sock_recv(p.client_side, 100);
  CHECK(eof.empty());  // EOF
}

TEST_CASE("sock_accept and sock_connect in one loop, sock_recv_into, EOF is empty") {
  loop::EventLoop lp;
  lp.run_until_complete(same_loop_exchange(lp));
  CHECK_FALSE(lp.remove_reader(0));
  lp.close();
}

loop::Coroutine<void> big_transfer(loop::EventLoop& lp, std::string* received) {
  Pair p = co_await connect_pair(lp, loop::SocketAddress::from_ip("127.0.0.1", 0));
  std::string data = iotest::pattern(8 * 1024 * 1024);
  auto sender = lp.create_task(lp.sock_sendall(p.client_side, data));
  *received = co_await recv_exactly(lp, p.server_side, data.size());
  co_await sender;
  CHECK(*received == data);
}

TEST_CASE("sock_sendall of 8 MiB waits for room and delivers every byte in order") {
  loop::EventLoop lp;
  std::string received;
  lp.run_until_complete(big_transfer(lp, &received));
  CHECK(received.size() == 8 * 1024 * 1024);
  lp.close();
}

loop::Coroutine<void> connect_to(loop::EventLoop& lp, int sock, loop::SocketAddress addr) {
  co_await lp.sock_connect(sock, addr);
}

TEST_CASE("a refused connect raises std::system_error with ECONNREFUSED") {
  loop::EventLoop lp;
  // A bound socket that does not listen: connecting to its port is refused, with no race.
  Fd holder = iotest::stream_socket(AF_INET);
  auto any = loop::SocketAddress::from_ip("127.0.0.1", 0);
  REQUIRE(::bind(holder, any.data(), any.size()) == 0);
  loop::SocketAddress bound;
  socklen_t len = loop::SocketAddress::capacity();
  ::getsockname(holder, bound.data(), &len);
  bound.set_size(len);
  Fd s = iotest::stream_socket(AF_INET);
  try {
    lp.run_until_complete(connect_to(lp, s, bound));
    FAIL("connect succeeded");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == ECONNREFUSED);
    CHECK_THAT(e.what(), Catch::Contains("Connect call failed ('127.0.0.1', " +
                                         std::to_string(bound.port()) + ")"));
  }
  CHECK_FALSE(lp.remove_writer(s));  // the wait was unregistered
  lp.close();
}

TEST_CASE("in debug mode a blocking socket is refused with std::invalid_argument") {
  loop::EventLoop lp;
  lp.set_debug(true);  // asyncio makes this check in debug mode only
  Fd s(::socket(AF_INET, SOCK_STREAM, 0));
  try {
    lp.run_until_complete(lp.sock_recv(s, 10));
    FAIL("a blocking socket was accepted");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()) == "the socket must be non-blocking");
  }
  lp.close();
}

TEST_CASE(
    "outside debug mode sock_recv skips the fcntl check: a bad fd fails with the recv's error") {
  loop::EventLoop lp;
  REQUIRE_FALSE(lp.get_debug());
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  ::close(fds[0]);
  ::close(fds[1]);  // fds[0] is now a closed descriptor
  try {
    lp.run_until_complete(lp.sock_recv(fds[0], 10));
    FAIL("a closed fd was accepted");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EBADF);
  }
  lp.close();
}

loop::Coroutine<void> cancel_recv(loop::EventLoop& lp, int sock, bool* cancelled) {
  auto t = lp.create_task(lp.sock_recv(sock, 10));
  co_await loop::sleep(0.01);
  CHECK_FALSE(t.done());
  t.cancel();
  try {
    co_await t;
  } catch (const loop::CancelledError&) {
    *cancelled = true;
  }
  co_await loop::sleep(0);
}

TEST_CASE("cancelling a task waiting in sock_recv unregisters the reader") {
  loop::EventLoop lp;
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
  Fd a(fds[0]), b(fds[1]);
  bool cancelled = false;
  lp.run_until_complete(cancel_recv(lp, a, &cancelled));
  CHECK(cancelled);
  CHECK_FALSE(lp.remove_reader(a));  // already removed by the cancellation
  // The socket is still usable and its data is not lost to the cancelled receive.
  REQUIRE(::write(b, "after", 5) == 5);
  CHECK(lp.run_until_complete(lp.sock_recv(a, 10)) == "after");
  lp.close();
}

// asyncio 3.7's _sock_recv removes its reader first thing in the reader's own callback; the
// done-callback (3.8's fix for a cancelled wait) then has nothing left to do and does not run.
TEST_CASE("a sock_recv that waited removes its reader in the reader's callback") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
  Fd a(fds[0]), b(fds[1]);
  loop::EventLoop lp;
  auto tracer = std::make_shared<test::CollectingTracer>();
  lp.set_tracer(tracer);
  auto main = [&]() -> loop::Coroutine<std::string> {
    lp.call_soon([&] { REQUIRE(::send(b, "hi", 2, 0) == 2); });
    std::string got = co_await lp.sock_recv(a, 10);
    CHECK_FALSE(lp.remove_reader(a));  // gone before the task resumed
    co_return got;
  };
  CHECK(lp.run_until_complete(main()) == "hi");
  lp.close();
  std::vector<std::string> seen;
  for (auto& r : tracer->records) {
    if (r["ev"] == "reader_added" || r["ev"] == "reader_removed") seen.push_back(r["ev"]);
    if (r["ev"] == "callback" &&
        (r["name"] == "sock_wait_readable" || r["name"] == "Future.done_callback"))
      seen.push_back(r["name"]);
  }
  // The removal is recorded as it happens, the reader's callback when it has returned.
  CHECK(seen == std::vector<std::string>{"reader_added", "reader_removed", "sock_wait_readable"});
}

// asyncio's _sock_read_done/_sock_write_done remove the watch only if its handle is not
// cancelled: a second sock_recv on the same socket replaces the first one's reader (and so
// cancels its handle), and cancelling the first task must leave the second one's reader
// alone. CPython 3.11, the same steps: t2 gets b'hi' (and with sock_sendall, sends b'two').
TEST_CASE("a cancelled sock_recv whose reader another sock_recv replaced leaves that one") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
  Fd a(fds[0]), b(fds[1]);
  loop::EventLoop lp;
  std::string got = "<none>";
  auto main = [&]() -> loop::Coroutine<void> {
    auto t1 = lp.create_task(lp.sock_recv(a, 10));
    co_await loop::sleep(0);
    auto t2 = lp.create_task(lp.sock_recv(a, 10));
    co_await loop::sleep(0);
    t1.cancel();
    co_await loop::sleep(0);  // t1's done-callbacks run
    co_await loop::sleep(0);
    REQUIRE(::send(b, "hi", 2, 0) == 2);
    try {
      got = co_await loop::wait_for(t2, 5.0);
    } catch (const loop::TimeoutError&) {
      got = "timeout: t2's reader was removed";
    }
  };
  lp.run_until_complete(main());
  CHECK(got == "hi");
  CHECK_FALSE(lp.remove_reader(a));  // t2's reader callback removed its own reader
  lp.close();
}

TEST_CASE("a cancelled sock_sendall whose writer another sock_sendall replaced leaves that one") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
  Fd a(fds[0]), b(fds[1]);
  // Fill a's send buffer, so that both sock_sendall calls below wait for room.
  std::string block(64 * 1024, 'f');
  std::size_t filled = 0;
  for (;;) {
    ssize_t n = ::send(a, block.data(), block.size(), MSG_DONTWAIT);
    if (n < 0) break;
    filled += static_cast<std::size_t>(n);
  }
  REQUIRE(errno == EAGAIN);
  loop::EventLoop lp;
  bool t2_done = false;
  std::size_t drained = 0;
  auto main = [&]() -> loop::Coroutine<void> {
    auto t1 = lp.create_task(lp.sock_sendall(a, "one"));
    co_await loop::sleep(0);
    auto t2 = lp.create_task(lp.sock_sendall(a, "two"));
    co_await loop::sleep(0);
    t1.cancel();
    co_await loop::sleep(0);
    co_await loop::sleep(0);
    // Make room: read everything that was written before.
    char buf[64 * 1024];
    while (drained < filled) {
      ssize_t n = ::recv(b, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      drained += static_cast<std::size_t>(n);
    }
    try {
      co_await loop::wait_for(t2, 5.0);
      t2_done = true;
    } catch (const loop::TimeoutError&) {
    }
  };
  lp.run_until_complete(main());
  CHECK(drained == filled);
  CHECK(t2_done);
  char tail[8] = {};
  CHECK(::recv(b, tail, sizeof tail, MSG_DONTWAIT) == 3);
  CHECK(std::string(tail, 3) == "two");
  lp.close();
}

loop::Coroutine<void> connect_by_name(loop::EventLoop& lp, unsigned short port) {
  Fd s = iotest::stream_socket(AF_INET);
  co_await lp.sock_connect(s, "localhost", port);
  co_await lp.sock_sendall(s, "by name");
}

loop::Coroutine<std::string> accept_and_read(loop::EventLoop& lp, int lst) {
  auto [conn, peer] = co_await lp.sock_accept(lst);
  Fd c(conn);
  co_return co_await recv_exactly(lp, c, 7);
}

TEST_CASE("sock_connect with a host name resolves it first") {
  loop::EventLoop lp;
  loop::SocketAddress bound;
  Fd lst = iotest::listener(loop::SocketAddress::from_ip("127.0.0.1", 0), &bound);
  auto reading = lp.create_task(accept_and_read(lp, lst));
  lp.run_until_complete(connect_by_name(lp, bound.port()));
  CHECK(lp.run_until_complete(reading) == "by name");
  lp.close();
}

loop::Coroutine<void> exchange_on(loop::EventLoop& lp, loop::SocketAddress where,
                                  loop::SocketAddress* peer_seen) {
  Pair p = co_await connect_pair(lp, where);
  *peer_seen = p.peer;
  co_await lp.sock_sendall(p.server_side, "hello over " + where.to_string());
  std::string got = co_await lp.sock_recv(p.client_side, 200);
  CHECK(got == "hello over " + where.to_string());
}

TEST_CASE("sock_connect/sock_accept over IPv6 (::1)") {
  {
    int probe = ::socket(AF_INET6, SOCK_STREAM, 0);
    auto a = loop::SocketAddress::from_ip("::1", 0);
    bool ok = probe >= 0 && ::bind(probe, a.data(), a.size()) == 0;
    if (probe >= 0) ::close(probe);
    if (!ok) {
      WARN("no IPv6 loopback here: skipped");
      return;
    }
  }
  loop::EventLoop lp;
  loop::SocketAddress peer;
  lp.run_until_complete(exchange_on(lp, loop::SocketAddress::from_ip("::1", 0), &peer));
  CHECK(peer.family() == AF_INET6);
  CHECK(peer.host() == "::1");
  lp.close();
}

TEST_CASE("sock_connect/sock_accept over an abstract unix socket") {
  loop::EventLoop lp;
  std::string name = "@libloop-test-" + std::to_string(::getpid());
  loop::SocketAddress peer;
  lp.run_until_complete(exchange_on(lp, loop::SocketAddress::from_unix_path(name), &peer));
  CHECK(peer.family() == AF_UNIX);
  lp.close();
}

loop::Coroutine<void> recv_after_reset(loop::EventLoop& lp) {
  Pair p = co_await connect_pair(lp, loop::SocketAddress::from_ip("127.0.0.1", 0));
  // SO_LINGER 0 then close: the peer gets a RST.
  linger lg{1, 0};
  ::setsockopt(p.client_side, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  p.client_side.reset();
  try {
    (void)co_await lp.sock_recv(p.server_side, 10);
    FAIL("no error after a reset");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == ECONNRESET);
  }
  try {
    co_await lp.sock_sendall(p.server_side, std::string(1 << 20, 'x'));
    FAIL("no error sending to a reset peer");
  } catch (const std::system_error& e) {
    CHECK((e.code().value() == EPIPE || e.code().value() == ECONNRESET));
  }
}

TEST_CASE("a peer reset gives ECONNRESET/EPIPE, never SIGPIPE") {
  loop::EventLoop lp;
  lp.run_until_complete(recv_after_reset(lp));
  lp.close();
}

namespace {

// Keeps every byte a transport hands it, to check that a transport reading on the same thread
// as sock_recv (both use the thread's read buffer) gets its own bytes, and sock_recv its own.
class Collect : public loop::Protocol {
 public:
  void data_received(std::string_view data) override { got.append(data); }
  std::string got;
};

loop::Coroutine<void> recv_sizes_next_to_a_transport(loop::EventLoop& lp) {
  int a[2], b[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a) == 0);
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, b) == 0);
  Fd a0(a[0]), a1(a[1]), b1(b[1]);
  auto collect = std::make_shared<Collect>();
  auto [transport, proto] = co_await lp.connect_accepted_socket([&] { return collect; }, b[0]);
  (void)proto;

  // A small message asked for with a large size: only what arrived comes back.
  co_await lp.sock_sendall(a1, "short");
  REQUIRE(::write(b1, "for the transport", 17) == 17);
  std::string small = co_await lp.sock_recv(a0, 1 << 16);
  CHECK(small == "short");
  // Larger than the read buffer (256 KiB): received into a string of its own.
  std::string big = iotest::pattern(300 * 1024);
  auto sender = lp.create_task(lp.sock_sendall(a1, big));
  std::string back;
  while (back.size() < big.size()) {
    std::string part = co_await lp.sock_recv(a0, 512 * 1024);
    REQUIRE_FALSE(part.empty());
    back += part;
  }
  co_await sender;
  CHECK(back == big);
  // Asked for less than is there: exactly that much, the rest stays queued.
  co_await lp.sock_sendall(a1, "0123456789");
  std::string head = co_await lp.sock_recv(a0, 4);
  std::string rest = co_await lp.sock_recv(a0, 100);
  CHECK(head == "0123");
  CHECK(rest == "456789");
  CHECK(collect->got == "for the transport");
  transport->close();
}

}  // namespace

TEST_CASE("sock_recv returns what arrived, below and above the read buffer's size") {
  loop::EventLoop lp;
  lp.run_until_complete(recv_sizes_next_to_a_transport(lp));
  lp.close();
}

TEST_CASE("sock_recv(sock, 0) and sock_recv_into an empty buffer return at once") {
  // Python's socket.recv(0) returns b'' without a system call; recv(2) of 0 bytes on an idle
  // unix socket says EAGAIN, and waiting would end on data the call does not take.
  loop::EventLoop lp;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  Fd a(sv[0]), b(sv[1]);
  auto both = [&]() -> loop::Coroutine<std::size_t> {
    std::string s = co_await lp.sock_recv(a, 0);
    std::span<char> none;
    std::size_t n = co_await lp.sock_recv_into(a, none);
    co_return s.size() + n;
  };
  // Nothing is ever sent: a wait would never end, and the timer stops the loop after 5 s.
  auto task = lp.create_task(both());
  auto guard = lp.call_later(5, [&] { task.cancel(); });
  CHECK(lp.run_until_complete(task) == 0);
  guard.cancel();
  lp.close();
}

// asyncio's _sock_recv/_sock_recv_into/_sock_sendall/_sock_accept make the call in the fd's
// callback and set the future's result; the task takes it one step later. What happens between
// the callback and the task's step (here a due timer of the same iteration, which runs after
// the fd callbacks) sees the call already made. Checked on CPython 3.11 and 3.7.
namespace {

struct SockPair {
  SockPair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    a = Fd(sv[0]);
    b = Fd(sv[1]);
  }
  Fd a, b;
};

std::string recv_now(int sock) {
  char buf[256];
  ssize_t n = ::recv(sock, buf, sizeof buf, MSG_DONTWAIT);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

}  // namespace

TEST_CASE("sock_recv and sock_recv_into receive in the reader's callback, not when resumed") {
  // Below the read buffer's size (the thread's buffer), above it (a string of its own), and
  // into the caller's buffer.
  for (int variant = 0; variant < 3; ++variant) {
    CAPTURE(variant);
    SockPair p;
    loop::EventLoop lp;
    std::string got;
    auto main = [&]() -> loop::Coroutine<void> {
      auto receiver = [&]() -> loop::Coroutine<void> {
        if (variant == 2) {
          char buf[100];
          std::size_t n = co_await lp.sock_recv_into(p.a, std::span<char>(buf, sizeof buf));
          got.assign(buf, n);
        } else {
          got = co_await lp.sock_recv(p.a, variant == 0 ? 100 : 512 * 1024);
        }
      };
      auto t = lp.create_task(receiver());
      co_await loop::sleep(0);
      REQUIRE(::send(p.b, "one", 3, 0) == 3);
      lp.call_later(0, [&] { REQUIRE(::send(p.b, "two", 3, 0) == 3); });
      co_await t;
    };
    lp.run_until_complete(main());
    CHECK(got == "one");
    CHECK(recv_now(p.a) == "two");  // left for the next call
    lp.close();
  }
}

TEST_CASE("a task cancelled after sock_recv's callback received loses the data, as asyncio's") {
  // CPython 3.11 and 3.7: the future is done, Task.cancel() throws CancelledError into the
  // coroutine at its next step; the bytes received went with the future.
  SockPair p;
  loop::EventLoop lp;
  bool cancelled = false;
  auto main = [&]() -> loop::Coroutine<void> {
    auto t = lp.create_task(lp.sock_recv(p.a, 100));
    co_await loop::sleep(0);
    REQUIRE(::send(p.b, "data", 4, 0) == 4);
    lp.call_later(0, [&] { CHECK(t.cancel()); });  // after the reader's callback
    try {
      (void)co_await t;
    } catch (const loop::CancelledError&) {
      cancelled = true;
    }
  };
  lp.run_until_complete(main());
  CHECK(cancelled);
  CHECK(recv_now(p.a).empty());
  CHECK_FALSE(lp.remove_reader(p.a));
  lp.close();
}

TEST_CASE("a sock_recv whose reader's callback finds nothing to read keeps waiting") {
  // A callback that runs first in the same batch takes the data: recv says EAGAIN in the
  // reader's callback, which returns without setting the future (asyncio's "try again next
  // time"); the reader stays for the next data.
  SockPair p;
  loop::EventLoop lp;
  auto main = [&]() -> loop::Coroutine<std::string> {
    auto t = lp.create_task(lp.sock_recv(p.a, 100));
    co_await loop::sleep(0);
    REQUIRE(::send(p.b, "x", 1, 0) == 1);
    lp.call_soon([&] { CHECK(recv_now(p.a) == "x"); });
    for (int i = 0; i < 3; ++i) co_await loop::sleep(0);
    CHECK_FALSE(t.done());
    REQUIRE(::send(p.b, "y", 1, 0) == 1);
    co_return co_await t;
  };
  CHECK(lp.run_until_complete(main()) == "y");
  lp.close();
}

TEST_CASE("sock_sendall sends the rest in the writer's callback, not when resumed") {
  SockPair p;
  std::string block(64 * 1024, 'f');
  std::size_t filled = 0;
  for (;;) {
    ssize_t n = ::send(p.a, block.data(), block.size(), MSG_DONTWAIT);
    if (n < 0) break;
    filled += static_cast<std::size_t>(n);
  }
  REQUIRE(errno == EAGAIN);
  loop::EventLoop lp;
  std::string timer_read = "<not run>";
  auto main = [&]() -> loop::Coroutine<void> {
    auto t = lp.create_task(lp.sock_sendall(p.a, "tail"));
    co_await loop::sleep(0);
    char buf[64 * 1024];
    for (std::size_t drained = 0; drained < filled;) {
      ssize_t n = ::recv(p.b, buf, sizeof buf, MSG_DONTWAIT);
      REQUIRE(n > 0);
      drained += static_cast<std::size_t>(n);
    }
    lp.call_later(0, [&] { timer_read = recv_now(p.b); });
    co_await t;
  };
  lp.run_until_complete(main());
  CHECK(timer_read == "tail");  // CPython 3.11 and 3.7: "timer reads b'tail'"
  lp.close();
}

TEST_CASE("a task cancelled after sock_accept's callback accepted closes the connection") {
  // CPython 3.11 and 3.7: the accepted socket goes with the future and is closed: the client
  // reads EOF. The connection is not left open, nor in the backlog.
  loop::EventLoop lp;
  loop::SocketAddress bound;
  Fd lst = iotest::listener(loop::SocketAddress::from_ip("127.0.0.1", 0), &bound);
  Fd client = iotest::stream_socket(AF_INET);
  bool cancelled = false;
  auto main = [&]() -> loop::Coroutine<void> {
    auto t = lp.create_task(lp.sock_accept(lst));
    co_await loop::sleep(0);
    int rc = ::connect(client, bound.data(), bound.size());
    REQUIRE((rc == 0 || errno == EINPROGRESS));
    lp.call_later(0, [&] { CHECK(t.cancel()); });  // after the reader's callback
    try {
      (void)co_await t;
    } catch (const loop::CancelledError&) {
      cancelled = true;
    }
    co_await loop::sleep(0.05);
  };
  lp.run_until_complete(main());
  CHECK(cancelled);
  char c;
  CHECK(::recv(client, &c, 1, MSG_DONTWAIT) == 0);  // EOF: the server side was closed
  lp.close();
}

// The stream transport against a real peer (Python's asyncio / socket in a subprocess).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <loop/loop.hpp>

#include "python_script_peer.hpp"
#include "stderr_capture.hpp"
#include "transport_helpers.hpp"

using test::PythonPeer;
using test::RecordingProtocol;

namespace {

// An asyncio echo server that also prints the SHA-256 of everything it received.
const char* kPyEchoServer = R"(
import asyncio, hashlib, sys
class Echo(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t; self.h = hashlib.sha256(); self.n = 0
    def data_received(self, d):
        self.h.update(d); self.n += len(d); self.t.write(d)
    def eof_received(self):
        print(self.n, self.h.hexdigest(), flush=True)
        return False
async def main():
    srv = await asyncio.get_running_loop().create_server(Echo, '127.0.0.1', 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
)";

// A connected pair of TCP sockets on 127.0.0.1 (fds[0] non-blocking, for the transport).
void tcp_pair(int fds[2]) {
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listener, 1) == 0);
  REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  fds[1] = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(::connect(fds[1], reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  fds[0] = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  REQUIRE(fds[0] >= 0);
  ::close(listener);
}

}  // namespace

TEST_CASE("echo round trip, callbacks in asyncio's order") {
  PythonPeer peer(kPyEchoServer);
  int port = peer.port();
  loop::EventLoop lp;
  auto proto = std::make_shared<RecordingProtocol>();
  std::vector<std::string> order;
  std::shared_ptr<loop::Transport> kept;
  proto->on_made = [&](loop::Transport&) { order.push_back("connection_made"); };
  proto->on_data = [&](std::string_view) {
    if (proto->received == "hello") proto->transport->close();
  };
  auto main = [&]() -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.create_connection([&] { return proto; }, "127.0.0.1", port);
    // create_connection returns once connection_made has run (asyncio's waiter).
    order.push_back("returned");
    kept = t;  // the loop lets go of the transport after connection_lost
    REQUIRE(p == proto);
    REQUIRE(p->transport == t.get());
    REQUIRE(t->extra<loop::SocketAddress>("peername")->to_string() ==
            "127.0.0.1:" + std::to_string(port));
    REQUIRE(t->extra<loop::SocketAddress>("sockname")->host() == "127.0.0.1");
    REQUIRE(t->extra<int>("socket").value() >= 0);
    REQUIRE(t->can_write_eof());
    REQUIRE(t->is_reading());
    t->write("hel");
    t->writelines({"l", "o"});
    REQUIRE(t->get_write_buffer_size() == 0);  // went straight to the socket
  };
  lp.run_until_complete(main());
  test::run_until(lp, [&] { return proto->lost; });
  REQUIRE(order == std::vector<std::string>{"connection_made", "returned"});
  REQUIRE(proto->received == "hello");
  REQUIRE(proto->events ==
          std::vector<std::string>{"connection_made", "data_received", "connection_lost"});
  REQUIRE(proto->lost_error == nullptr);
  REQUIRE(kept->is_closing());
  REQUIRE(kept->get_protocol() == nullptr);  // dropped after connection_lost
}

TEST_CASE("100 MiB through an echo peer, both directions checked by hash") {
  PythonPeer peer(kPyEchoServer);
  int port = peer.port();
  loop::EventLoop lp;
  const std::size_t total = 100u << 20, chunk = 256u << 10;
  const std::string block = test::pattern(1u << 20);
  test::Sha256 sent_hash, recv_hash;
  std::size_t sent = 0, received = 0;
  auto proto = std::make_shared<RecordingProtocol>();
  bool paused = false;
  auto pump = [&] {
    // The producer stops at pause_writing and continues at resume_writing.
    while (!paused && sent < total) {
      std::string_view piece(block.data() + (sent % block.size()), chunk);
      sent_hash.update(piece);
      sent += chunk;
      proto->transport->write(piece);
    }
    if (sent == total && !paused) proto->transport->write_eof();
  };
  proto->on_made = [&](loop::Transport&) { lp.call_soon(pump); };
  proto->on_pause = [&] { paused = true; };
  proto->on_resume = [&] {
    paused = false;
    pump();
  };
  proto->on_data = [&](std::string_view d) {
    recv_hash.update(d);
    received += d.size();
    proto->received.clear();  // keep memory flat
  };
  auto main = [&]() -> loop::Coroutine<void> {
    co_await lp.create_connection([&] { return proto; }, "127.0.0.1", port);
  };
  lp.run_until_complete(main());
  test::run_until(
      lp, [&] { return proto->lost; }, 60);
  REQUIRE(proto->lost_error == nullptr);
  REQUIRE(sent == total);
  REQUIRE(received == total);
  REQUIRE(proto->paused >= 1);
  std::string expected = sent_hash.hex();
  REQUIRE(recv_hash.hex() == expected);
  // The peer's own count and hash of what it got.
  REQUIRE(peer.readline() == std::to_string(total) + " " + expected);
}

TEST_CASE("BufferedProtocol reads straight into the protocol's buffer") {
  PythonPeer peer(kPyEchoServer);
  int port = peer.port();
  struct Buffered : loop::BufferedProtocol {
    std::vector<char> mem = std::vector<char>(7);
    std::string got;
    std::vector<std::size_t> hints;
    loop::Transport* t = nullptr;
    bool lost = false;
    void connection_made(loop::BaseTransport& tr) override {
      t = dynamic_cast<loop::Transport*>(&tr);
    }
    std::span<char> get_buffer(std::size_t) override { return {mem.data(), mem.size()}; }
    void buffer_updated(std::size_t n) override {
      got.append(mem.data(), n);  // the bytes are in our own memory
      if (got.size() == 20) t->close();
    }
    void connection_lost(std::exception_ptr) override { lost = true; }
  };
  auto proto = std::make_shared<Buffered>();
  loop::EventLoop lp;
  auto main = [&]() -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.create_connection([&] { return proto; }, "127.0.0.1", port);
    t->write("abcdefghijklmnopqrst");
  };
  lp.run_until_complete(main());
  test::run_until(lp, [&] { return proto->lost; });
  REQUIRE(proto->got == "abcdefghijklmnopqrst");
}

TEST_CASE("half-close: write_eof, then the peer answers and closes") {
  // Python reads to EOF, then sends back what it got, reversed, and closes.
  PythonPeer peer(R"(
import socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); data = b''
while True:
    d = c.recv(65536)
    if not d: break
    data += d
c.sendall(b'got:' + data[::-1]); c.close()
)");
  int port = peer.port();
  loop::EventLoop lp;
  auto proto = std::make_shared<RecordingProtocol>();
  auto main = [&]() -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.create_connection([&] { return proto; }, "127.0.0.1", port);
    t->write("abc");
    t->write_eof();
    REQUIRE_THROWS_AS(t->write("more"), std::runtime_error);
    REQUIRE_FALSE(t->is_closing());
  };
  lp.run_until_complete(main());
  test::run_until(lp, [&] { return proto->lost; });
  REQUIRE(proto->received == "got:cba");
  REQUIRE(proto->events == std::vector<std::string>{"connection_made", "data_received",
                                                    "eof_received", "connection_lost"});
}

TEST_CASE("flow control under a slow reader: pause_writing, bounded buffer, resume_writing") {
  // The peer does not read for 0.5 s, then reads everything and prints the count.
  PythonPeer peer(test::slow_reader_peer("0.5"));
  int port = peer.port();
  loop::EventLoop lp;
  const std::size_t total = 50u << 20, chunk = 64u << 10;
  const std::string block = test::pattern(chunk);
  std::size_t sent = 0, max_buffered = 0;
  bool paused = false;
  auto proto = std::make_shared<RecordingProtocol>();
  auto pump = [&] {
    while (!paused && sent < total) {
      proto->transport->write(block);
      sent += chunk;
      max_buffered = std::max(max_buffered, proto->transport->get_write_buffer_size());
    }
    if (sent == total && !proto->transport->is_closing()) proto->transport->close();
  };
  proto->on_made = [&](loop::Transport&) { lp.call_soon(pump); };
  proto->on_pause = [&] { paused = true; };
  proto->on_resume = [&] {
    paused = false;
    pump();
  };
  auto main = [&]() -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.create_connection([&] { return proto; }, "127.0.0.1", port);
    auto [low, high] = t->get_write_buffer_limits();
    REQUIRE(high == 64 * 1024);  // asyncio's defaults
    REQUIRE(low == 16 * 1024);
  };
  lp.run_until_complete(main());
  test::run_until(
      lp, [&] { return proto->lost; }, 60);
  REQUIRE(proto->paused >= 1);
  REQUIRE(proto->resumed >= 1);
  // The protocol stops writing when paused: the buffer never exceeds high water + one write.
  REQUIRE(max_buffered <= 64 * 1024 + chunk);
  REQUIRE(proto->lost_error == nullptr);
  REQUIRE(peer.readline() == std::to_string(total));
}

TEST_CASE("set_write_buffer_limits validates and applies asyncio's defaults") {
  PythonPeer peer(kPyEchoServer);
  int port = peer.port();
  loop::EventLoop lp;
  auto proto = std::make_shared<RecordingProtocol>();
  auto main = [&]() -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.create_connection([&] { return proto; }, "127.0.0.1", port);
    t->set_write_buffer_limits(1000);
    REQUIRE(t->get_write_buffer_limits() == std::pair<std::size_t, std::size_t>{250, 1000});
    t->set_write_buffer_limits(std::nullopt, 100);
    REQUIRE(t->get_write_buffer_limits() == std::pair<std::size_t, std::size_t>{100, 400});
    REQUIRE_THROWS_AS(t->set_write_buffer_limits(10, 20), std::invalid_argument);
    t->set_write_buffer_limits();
    REQUIRE(t->get_write_buffer_limits() ==
            std::pair<std::size_t, std::size_t>{16 * 1024, 64 * 1024});
    t->abort();
  };
  lp.run_until_complete(main());
  test::run_until(lp, [&] { return proto->lost; });
  REQUIRE(proto->lost_error == nullptr);
}

// A TCP transport's fd is edge-triggered (io/poller.hpp): everything queued before the first
// poll (more than one read's buffer, and maybe the EOF) arrives in one edge: all of it is read.
TEST_CASE("data queued beyond one read's buffer is all received, then the EOF") {
  int fds[2];
  tcp_pair(fds);
  struct Buffered : loop::BufferedProtocol {
    std::vector<char> mem = std::vector<char>(1000);
    std::string got;
    int reads = 0;
    bool eof = false, lost = false;
    std::span<char> get_buffer(std::size_t) override { return {mem.data(), mem.size()}; }
    void buffer_updated(std::size_t n) override {
      got.append(mem.data(), n);
      ++reads;
    }
    bool eof_received() override {
      eof = true;
      return false;
    }
    void connection_lost(std::exception_ptr) override { lost = true; }
  };
  std::string sent;
  for (int i = 0; sent.size() < 100000; ++i) sent += std::to_string(i) + ",";
  auto proto = std::make_shared<Buffered>();
  loop::EventLoop lp;
  auto main = [&]() -> loop::Coroutine<void> {
    co_await lp.connect_accepted_socket([&] { return proto; }, fds[0]);
  };
  SECTION("the peer stays: every buffer is read, with no new data to report the fd again") {
    REQUIRE(::write(fds[1], sent.data(), sent.size()) == static_cast<ssize_t>(sent.size()));
    lp.run_until_complete(main());
    test::run_until(
        lp, [&] { return proto->got.size() >= sent.size(); }, 10);
    CHECK(proto->got == sent);
    CHECK_FALSE(proto->eof);
    ::close(fds[1]);
  }
  SECTION("the peer closed after writing: the data, then the EOF") {
    REQUIRE(::write(fds[1], sent.data(), sent.size()) == static_cast<ssize_t>(sent.size()));
    ::close(fds[1]);
    lp.run_until_complete(main());
  }
  test::run_until(
      lp, [&] { return proto->lost; }, 10);
  CHECK(proto->got == sent);
  CHECK(proto->reads >= 100);  // one buffer per read, as asyncio's one recv_into per event
  CHECK(proto->eof);
}

// Reads that stop short with data still queued, found by a review of the edge-triggered
// Poller: a TCP read stops at the urgent mark (the fd goes level-triggered on EPOLLPRI); a unix
// stream read stops after a chunk that carried file descriptors (unix sockets stay
// level-triggered). asyncio reads the rest at the next poll; so must the transport, with
// nothing more from the peer.
TEST_CASE("a read that stops short with data queued behind it: the rest is read at once") {
  int fds[2];
  std::string expected;
  SECTION("TCP urgent data") {
    tcp_pair(fds);
    REQUIRE(::send(fds[1], "AAAA", 4, 0) == 4);
    REQUIRE(::send(fds[1], "X", 1, MSG_OOB) == 1);  // out of band: not in the stream
    REQUIRE(::send(fds[1], "BBBB", 4, 0) == 4);
    expected = "AAAABBBB";
  }
  SECTION("a unix stream chunk that carried a file descriptor") {
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
    int passed = ::dup(fds[1]);
    char control[CMSG_SPACE(sizeof(int))] = {};
    char first[] = "AAAA";
    iovec iov{first, 4};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &passed, sizeof(int));
    REQUIRE(::sendmsg(fds[1], &msg, 0) == 4);
    ::close(passed);
    REQUIRE(::send(fds[1], "BBBB", 4, 0) == 4);
    expected = "AAAABBBB";
  }
  usleep(20000);  // everything is queued before the transport's first poll
  auto proto = std::make_shared<RecordingProtocol>();
  loop::EventLoop lp;
  auto main = [&]() -> loop::Coroutine<void> {
    co_await lp.connect_accepted_socket([&] { return proto; }, fds[0]);
  };
  lp.run_until_complete(main());
  test::run_until(
      lp, [&] { return proto->received.size() >= expected.size(); }, 5);
  CHECK(proto->received == expected);
  ::close(fds[1]);
  test::run_until(
      lp, [&] { return proto->lost; }, 5);
}

TEST_CASE("pause_reading stops data_received until resume_reading") {
  PythonPeer peer(kPyEchoServer);
  int port = peer.port();
  loop::EventLoop lp;
  auto proto = std::make_shared<RecordingProtocol>();
  auto main = [&]() -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.create_connection([&] { return proto; }, "127.0.0.1", port);
    t->pause_reading();
    REQUIRE_FALSE(t->is_reading());
    t->write("xyz");
    co_await loop::sleep(0.3);  // the echo is back in our socket by now
    REQUIRE(p->received.empty());
    t->resume_reading();
    REQUIRE(t->is_reading());
    for (int i = 0; i < 200 && p->received.size() < 3; ++i) co_await loop::sleep(0.01);
    REQUIRE(p->received == "xyz");
    t->close();
    REQUIRE_FALSE(t->is_reading());
  };
  lp.run_until_complete(main());
  test::run_until(lp, [&] { return proto->lost; });
}

TEST_CASE("a peer reset mid-write: connection_lost gets the error, no SIGPIPE") {
  // SIGPIPE keeps its default action: if a write raised it, this test process would die.
  REQUIRE(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
  PythonPeer peer(R"(
import socket, struct
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.recv(1000)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
c.close()  # RST
print('reset', flush=True)
)");
  int port = peer.port();
  loop::EventLoop lp;
  // Debug mode logs the reset (asyncio: logger.debug("%r: %s", transport, message)), naming the
  // transport and its peer.
  lp.set_debug(true);
  test::StderrCapture err;
  auto proto = std::make_shared<RecordingProtocol>();
  const std::string block = test::pattern(64 * 1024);
  int writes = 0;
  std::function<void()> keep_writing = [&] {
    if (proto->lost || !proto->transport || proto->transport->is_closing()) return;
    // Ignore flow control on purpose: keep the kernel's send path busy.
    if (proto->transport->get_write_buffer_size() < (1u << 20)) proto->transport->write(block);
    ++writes;
    lp.call_later(0.001, keep_writing);
  };
  proto->on_made = [&](loop::Transport&) { lp.call_soon(keep_writing); };
  std::shared_ptr<loop::Transport> kept;
  auto main = [&]() -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.create_connection([&] { return proto; }, "127.0.0.1", port);
    kept = t;
  };
  lp.run_until_complete(main());
  test::run_until(lp, [&] { return proto->lost; });
  REQUIRE(peer.readline() == "reset");
  REQUIRE(proto->lost_error != nullptr);
  try {
    std::rethrow_exception(proto->lost_error);
  } catch (const std::system_error& e) {
    INFO(e.what());
    REQUIRE((e.code().value() == ECONNRESET || e.code().value() == EPIPE));
  }
  // Writes after the loss are dropped quietly.
  kept->write("late");
  std::string logged = err.text();
  INFO(logged);
  CHECK_THAT(logged, Catch::Contains("loop: <loop::detail::SocketTransport fd=") &&
                         Catch::Contains(" peer=127.0.0.1:" + std::to_string(port)) &&
                         Catch::Contains(": Fatal "));
}

TEST_CASE("write() after a buffered close() was flushed raises: nothing reaches a reused fd") {
  // asyncio: close() with data buffered leaves _conn_lost at 0; _write_ready flushes, calls
  // _call_connection_lost, which sets _sock to None, so a later write() raises.
  int a[2], b[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a) == 0);
  loop::EventLoop lp;
  auto proto = std::make_shared<RecordingProtocol>();
  std::shared_ptr<loop::Transport> kept;
  int old_fd = -1;
  auto main = [&]() -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.connect_accepted_socket([&] { return proto; }, a[0]);
    kept = t;
    old_fd = t->extra<int>("socket").value();
    t->write(std::string(4 << 20, 'x'));
    REQUIRE(t->get_write_buffer_size() > 0);
    t->close();  // connection_lost comes from write_ready, once the buffer is flushed
    char buf[65536];
    while (!proto->lost)
      if (::recv(a[1], buf, sizeof buf, 0) <= 0) co_await loop::sleep(0.001);
  };
  lp.run_until_complete(main());
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b) == 0);
  REQUIRE(b[0] == old_fd);  // the number is reused at once
  CHECK(kept->extra<int>("socket").value() == -1);
  CHECK_THROWS_AS(kept->write("LEAKED-INTO-ANOTHER-CONNECTION"), std::runtime_error);
  CHECK_NOTHROW(kept->write_eof());  // closing: a no-op, as asyncio's
  kept->abort();
  lp.run_until_complete(loop::sleep(0.01));
  char buf[64];
  CHECK(::recv(b[1], buf, sizeof buf, 0) == -1);  // nothing arrived (EAGAIN)
  CHECK(proto->events == std::vector<std::string>{"connection_made", "connection_lost"});
  for (int fd : {a[1], b[0], b[1]}) ::close(fd);
}

namespace {

// A protocol that hands the transport over to `next` inside one of its callbacks (as an
// HTTP Upgrade does), then keeps using its own members: the transport held the only
// reference to it, so it must stay alive until that callback returns.
struct Switching : loop::Protocol {
  struct Shared {
    std::vector<std::string> log;
    loop::Transport* transport = nullptr;
  };
  Switching(std::string n, Shared* s) : name(std::move(n)), shared(s) {}
  ~Switching() override {
    if (name == "old") shared->log.push_back("old destroyed");
  }
  void event(const std::string& what) {
    shared->log.push_back(name + " " + what);
    if (what.rfind(switch_in, 0) == 0 && next) {
      shared->transport->set_protocol(std::move(next));
      shared->log.push_back(name + " still running after set_protocol");  // reads *this
    }
  }
  void connection_made(loop::BaseTransport& t) override {
    shared->transport = dynamic_cast<loop::Transport*>(&t);
    event("connection_made");
  }
  void data_received(std::string_view d) override { event("data " + std::string(d)); }
  bool eof_received() override {
    event("eof_received");
    return false;
  }
  void pause_writing() override { event("pause_writing"); }
  void resume_writing() override { event("resume_writing"); }
  void connection_lost(std::exception_ptr) override { event("connection_lost"); }

  std::string name;
  Shared* shared;
  std::string switch_in;
  std::shared_ptr<Switching> next;
};

// Drains what the transport sent until `n` bytes came (the client side is non-blocking).
loop::Coroutine<void> drain(int fd, std::size_t n) {
  std::vector<char> buf(1 << 16);
  while (n > 0) {
    ssize_t got = ::recv(fd, buf.data(), buf.size(), 0);
    if (got > 0)
      n -= static_cast<std::size_t>(got);
    else
      co_await loop::sleep(0.001);
  }
}

}  // namespace

TEST_CASE("set_protocol inside the protocol's own callback: the old one lives until it returns") {
  // Every callback the transport makes, each one the place of the switch in its own run.
  const std::vector<std::string> events = {"connection_made", "data one", "pause_writing",
                                           "resume_writing",  "data two", "eof_received",
                                           "connection_lost"};
  auto where = GENERATE(as<std::string>{}, "connection_made", "data one", "pause_writing",
                        "resume_writing", "data two", "eof_received", "connection_lost");
  INFO("switch in " << where);
  loop::EventLoop lp;
  Switching::Shared shared;
  auto main = [&]() -> loop::Coroutine<void> {
    // Through a server: only the transport holds the protocol (no caller keeps it).
    auto srv = co_await lp.create_server(
        [&] {
          auto old = std::make_shared<Switching>("old", &shared);
          old->switch_in = where;
          old->next = std::make_shared<Switching>("new", &shared);
          return old;
        },
        "127.0.0.1", 0);
    int c = ::socket(AF_INET, SOCK_STREAM, 0);
    auto addr = srv->sockets().at(0);
    REQUIRE(::connect(c, addr.data(), addr.size()) == 0);
    REQUIRE(::fcntl(c, F_SETFL, O_NONBLOCK) == 0);
    for (int i = 0; i < 2000 && !shared.transport; ++i) co_await loop::sleep(0.001);
    REQUIRE(::send(c, "one", 3, 0) == 3);
    co_await loop::sleep(0.05);
    // pause_writing from write(), resume_writing from write_ready once the client drained.
    shared.transport->set_write_buffer_limits(0, 0);
    shared.transport->write(std::string(8 << 20, 'x'));
    co_await drain(c, 8 << 20);
    co_await loop::sleep(0.05);
    REQUIRE(::send(c, "two", 3, 0) == 3);
    co_await loop::sleep(0.05);
    ::shutdown(c, SHUT_WR);
    auto lost = [&] {
      for (auto& e : shared.log)
        if (e.find("connection_lost") != std::string::npos) return true;
      return false;
    };
    for (int i = 0; i < 2000 && !lost(); ++i) co_await loop::sleep(0.001);
    co_await loop::sleep(0.01);
    ::close(c);
    srv->close();
  };
  lp.run_until_complete(main());
  std::vector<std::string> expected;
  std::string who = "old ";
  for (auto& e : events) {
    expected.push_back(who + e);
    if (e == where) {
      expected.push_back("old still running after set_protocol");
      expected.push_back("old destroyed");
      who = "new ";
    }
  }
  CHECK(shared.log == expected);
}

TEST_CASE("get_buffer() switching to a plain Protocol: buffer_updated fails as asyncio's") {
  // asyncio reads into the old protocol's buffer, then calls the new protocol's
  // buffer_updated, which a plain Protocol lacks: _fatal_error, connection_lost on the new one.
  struct Old : loop::BufferedProtocol {
    std::vector<std::string>* log;
    std::shared_ptr<RecordingProtocol> next;
    loop::Transport* t = nullptr;
    std::vector<char> mem = std::vector<char>(16, '.');
    explicit Old(std::vector<std::string>* l) : log(l) {}
    ~Old() override { log->push_back("old destroyed holding " + std::string(mem.data(), 3)); }
    void connection_made(loop::BaseTransport& tr) override {
      t = dynamic_cast<loop::Transport*>(&tr);
    }
    std::span<char> get_buffer(std::size_t) override {
      t->set_protocol(std::move(next));
      return {mem.data(), mem.size()};
    }
    void buffer_updated(std::size_t) override { log->push_back("old buffer_updated"); }
  };
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  loop::EventLoop lp;
  std::vector<std::string> log, reported;
  lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& ctx) {
    reported.push_back(ctx.message);
  });
  auto next = std::make_shared<RecordingProtocol>();
  auto main = [&]() -> loop::Coroutine<void> {
    co_await lp.connect_accepted_socket(
        [&] {
          auto old = std::make_shared<Old>(&log);
          old->next = next;
          return old;
        },
        sv[0]);
    REQUIRE(::send(sv[1], "abc", 3, 0) == 3);
  };
  lp.run_until_complete(main());
  test::run_until(lp, [&] { return next->lost; });
  CHECK(log == std::vector<std::string>{"old destroyed holding abc"});
  CHECK(reported ==
        std::vector<std::string>{"Fatal error: protocol.buffer_updated() call failed."});
  CHECK(next->events == std::vector<std::string>{"connection_lost"});
  CHECK(next->lost_error != nullptr);
  ::close(sv[1]);
}

TEST_CASE("pause_reading + resume_reading drop a read already due: it moves to the next poll") {
  // asyncio: _remove_reader cancels the pending _read_ready handle, _add_reader makes a new
  // one, which the selector reports at the next iteration (after what call_soon queued now).
  int a[2], b[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a) == 0);
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b) == 0);
  loop::EventLoop lp;
  std::vector<std::string> log;
  auto pa = std::make_shared<RecordingProtocol>(), pb = std::make_shared<RecordingProtocol>();
  bool first = true;
  for (auto [p, other] : {std::pair{pa, pb}, std::pair{pb, pa}}) {
    p->on_data = [&, other = other.get()](std::string_view d) {
      log.push_back("data " + std::string(d));
      if (!first) return;
      first = false;
      other->transport->pause_reading();
      other->transport->resume_reading();
      lp.call_soon([&] { log.push_back("call_soon from the first data_received"); });
    };
  }
  auto main = [&]() -> loop::Coroutine<void> {
    co_await lp.connect_accepted_socket([&] { return pa; }, a[0]);
    co_await lp.connect_accepted_socket([&] { return pb; }, b[0]);
    co_await loop::sleep(0.01);
    // Both readable before the next poll: both reads are due in the same iteration.
    REQUIRE(::send(a[1], "a", 1, 0) == 1);
    REQUIRE(::send(b[1], "b", 1, 0) == 1);
    for (int i = 0; i < 1000 && log.size() < 3; ++i) co_await loop::sleep(0.001);
    pa->transport->close();
    pb->transport->close();
  };
  lp.run_until_complete(main());
  REQUIRE(log.size() == 3);
  CHECK(log[1] == "call_soon from the first data_received");
  for (int fd : {a[1], b[1]}) ::close(fd);
}

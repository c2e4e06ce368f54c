// A loop destroyed while transports are still open lets go of them: each transport keeps
// itself alive through the loop until connection_lost, and its protocol often points back at
// it, so without the loop's help these cycles would outlive it as leaks (ASan found them).
// Each test checks through weak_ptrs that the transport, its protocol and the fd are gone.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <memory>
#include <string>

namespace {

// Holds its transport, as an application protocol that writes later would.
struct Holder : loop::Protocol {
  std::shared_ptr<loop::BaseTransport> transport;
  void connection_made(loop::BaseTransport& t) override { transport = t.shared_transport(); }
};

struct DatagramHolder : loop::DatagramProtocol {
  std::shared_ptr<loop::BaseTransport> transport;
  void connection_made(loop::BaseTransport& t) override { transport = t.shared_transport(); }
};

bool fd_is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

loop::Coroutine<std::weak_ptr<Holder>> connect_accepted(loop::EventLoop& lp, int fd) {
  auto factory = [] { return std::make_shared<Holder>(); };
  auto [transport, protocol] = co_await lp.connect_accepted_socket(factory, fd);
  co_return std::weak_ptr<Holder>(protocol);
}

}  // namespace

TEST_CASE("a socket transport still open when the loop is destroyed is released",
          "[transports][teardown]") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  std::weak_ptr<Holder> weak;
  {
    loop::EventLoop lp;
    weak = lp.run_until_complete(connect_accepted(lp, sv[0]));
    // More than the socket takes, so that a write is left waiting on the reactor too.
    auto* t = dynamic_cast<loop::Transport*>(weak.lock()->transport.get());
    REQUIRE(t != nullptr);
    t->write(std::string(4 << 20, 'x'));
    REQUIRE(t->get_write_buffer_size() > 0);
    REQUIRE_FALSE(weak.expired());
    REQUIRE(fd_is_open(sv[0]));
  }
  CHECK(weak.expired());
  CHECK_FALSE(fd_is_open(sv[0]));
  ::close(sv[1]);
}

TEST_CASE("a socket transport kept after the loop is destroyed no longer writes to its fd",
          "[transports][teardown]") {
  int sv[2], b[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  std::shared_ptr<loop::BaseTransport> kept;
  {
    loop::EventLoop lp;
    auto weak = lp.run_until_complete(connect_accepted(lp, sv[0]));
    kept = weak.lock()->transport;
  }
  auto* t = dynamic_cast<loop::Transport*>(kept.get());
  REQUIRE(t != nullptr);
  CHECK(t->is_closing());
  CHECK(t->extra<int>("socket").value() == -1);
  // The loop's descriptors and the socket's are free again: whatever takes their numbers
  // must not get the write (nor may the write reach the destroyed loop).
  std::vector<int> fresh;
  for (int i = 0; i < 4; ++i) {
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b) == 0);
    fresh.insert(fresh.end(), {b[0], b[1]});
  }
  CHECK_THROWS_AS(t->write("LEAKED"), std::runtime_error);
  t->close();  // closing already: nothing to do
  kept.reset();
  char buf[16];
  for (int fd : fresh) CHECK(::recv(fd, buf, sizeof buf, 0) == -1);
  for (int fd : fresh) ::close(fd);
  ::close(sv[1]);
}

TEST_CASE("a pipe transport still open when the loop is destroyed is released",
          "[transports][teardown]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::weak_ptr<Holder> weak;
  {
    loop::EventLoop lp;
    auto connect = [](loop::EventLoop& l, int fd) -> loop::Coroutine<std::weak_ptr<Holder>> {
      auto factory = [] { return std::make_shared<Holder>(); };
      auto [transport, protocol] = co_await l.connect_read_pipe(factory, fd);
      co_return std::weak_ptr<Holder>(protocol);
    };
    weak = lp.run_until_complete(connect(lp, fds[0]));
    REQUIRE_FALSE(weak.expired());
  }
  CHECK(weak.expired());
  CHECK_FALSE(fd_is_open(fds[0]));
  ::close(fds[1]);
}

TEST_CASE("a datagram transport still open when the loop is destroyed is released",
          "[transports][teardown]") {
  std::weak_ptr<DatagramHolder> weak;
  int fd = -1;
  {
    loop::EventLoop lp;
    auto connect = [](loop::EventLoop& l) -> loop::Coroutine<std::weak_ptr<DatagramHolder>> {
      auto factory = [] { return std::make_shared<DatagramHolder>(); };
      loop::DatagramEndpointOptions options;
      options.local_addr = loop::SocketAddress::from_ip("127.0.0.1", 0);
      auto [transport, protocol] = co_await l.create_datagram_endpoint(factory, options);
      co_return std::weak_ptr<DatagramHolder>(protocol);
    };
    weak = lp.run_until_complete(connect(lp));
    REQUIRE_FALSE(weak.expired());
    fd = std::any_cast<int>(weak.lock()->transport->get_extra_info("socket"));
    REQUIRE(fd_is_open(fd));
  }
  CHECK(weak.expired());
  CHECK_FALSE(fd_is_open(fd));
}

TEST_CASE("a datagram transport held past its loop's destruction does not reach the loop",
          "[transports][teardown]") {
  // asyncio: close() and abort() end in loop.call_soon, which raises "Event loop is closed";
  // sendto() without remote_addr goes to the socket, which loop_destroyed closed here.
  std::shared_ptr<loop::DatagramTransport> closed, aborted;
  loop::SocketAddress to;
  {
    // On the heap, so that ASan reports any use of it after its destruction.
    auto owned = std::make_unique<loop::EventLoop>();
    auto& lp = *owned;
    auto make =
        [](loop::EventLoop& l) -> loop::Coroutine<std::shared_ptr<loop::DatagramTransport>> {
      auto factory = [] { return std::make_shared<loop::DatagramProtocol>(); };
      loop::DatagramEndpointOptions options;
      options.local_addr = loop::SocketAddress::from_ip("127.0.0.1", 0);
      auto [transport, protocol] = co_await l.create_datagram_endpoint(factory, options);
      co_return transport;
    };
    closed = lp.run_until_complete(make(lp));
    aborted = lp.run_until_complete(make(lp));
    to = *closed->extra<loop::SocketAddress>("sockname");
    owned.reset();
  }
  CHECK_NOTHROW(closed->sendto("late", to));
  CHECK_THROWS_WITH(closed->close(), "Event loop is closed");
  CHECK(closed->is_closing());
  CHECK_NOTHROW(closed->close());  // already closing
  CHECK_THROWS_WITH(aborted->abort(), "Event loop is closed");
  CHECK_NOTHROW(aborted->abort());  // already aborted
  CHECK_NOTHROW(aborted->close());
  closed.reset();
  aborted.reset();
}

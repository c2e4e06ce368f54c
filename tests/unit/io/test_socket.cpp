// loop::Socket with the sock_* coroutines: an echo over 127.0.0.1 without raw fds.
#include <fcntl.h>
#include <netinet/in.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <loop/loop.hpp>
#include <system_error>

namespace {

loop::Coroutine<std::string> echo_once(loop::EventLoop& lp, loop::Socket& lst) {
  loop::Socket client = loop::Socket::create(AF_INET);
  auto accepting = lp.create_task(lp.sock_accept(lst));
  co_await lp.sock_connect(client, lst.getsockname());
  loop::Socket conn((co_await accepting).first);
  CHECK(conn.getpeername() == client.getsockname());
  co_await lp.sock_sendall(client, "through Socket");
  std::string got = co_await lp.sock_recv(conn, 100);
  co_return got;
}

}  // namespace

TEST_CASE("loop::Socket owns a non-blocking fd and works with the sock_* coroutines") {
  loop::EventLoop lp;
  loop::Socket lst = loop::Socket::create(AF_INET);
  CHECK((::fcntl(lst, F_GETFL) & O_NONBLOCK) != 0);
  CHECK((::fcntl(lst, F_GETFD) & FD_CLOEXEC) != 0);
  lst.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
  lst.bind(loop::SocketAddress::from_ip("127.0.0.1", 0));
  lst.listen();
  CHECK(lst.getsockname().port() != 0);
  CHECK(lp.run_until_complete(echo_once(lp, lst)) == "through Socket");
  int fd = lst.fileno();
  loop::Socket moved = std::move(lst);
  CHECK_FALSE(lst);
  CHECK(moved.fileno() == fd);
  moved.close();
  CHECK(::fcntl(fd, F_GETFD) == -1);  // closed
  lp.close();
}

TEST_CASE("loop::Socket errors are std::system_error naming the call") {
  loop::Socket a = loop::Socket::create(AF_INET);
  a.bind(loop::SocketAddress::from_ip("127.0.0.1", 0));
  loop::Socket b = loop::Socket::create(AF_INET);
  try {
    b.bind(a.getsockname());
    FAIL("bound twice");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EADDRINUSE);
    CHECK_THAT(e.what(), Catch::Contains("bind 127.0.0.1:"));
  }
  CHECK_THROWS_AS(b.getpeername(), std::system_error);
  int raw = a.release();
  CHECK_FALSE(a);
  CHECK(::fcntl(raw, F_GETFD) != -1);  // release() did not close it
  ::close(raw);
}

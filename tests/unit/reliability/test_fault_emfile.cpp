// `ulimit -n` low: sock_accept with no descriptor left raises std::system_error(EMFILE) — an
// exception for the caller, not a crash — the loop keeps running, and the same connection is
// accepted once descriptors are free again (it waited in the listen backlog).
#include <sys/resource.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <loop/loop.hpp>
#include <system_error>
#include <vector>

#include "io_test_support.hpp"

using iotest::Fd;

namespace {

// Lowers RLIMIT_NOFILE to the descriptors now in use (none left) for its lifetime.
struct NoFreeDescriptors {
  rlimit old{};
  NoFreeDescriptors() {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
    int lowest_free = ::dup(0);
    REQUIRE(lowest_free >= 0);
    ::close(lowest_free);
    rlimit low = old;
    low.rlim_cur = static_cast<rlim_t>(lowest_free);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
    REQUIRE(::dup(0) == -1);  // really none left
    REQUIRE(errno == EMFILE);
  }
  void restore() { ::setrlimit(RLIMIT_NOFILE, &old); }
  ~NoFreeDescriptors() { restore(); }
};

}  // namespace

TEST_CASE("emfile: sock_accept out of descriptors raises EMFILE, then accepts again") {
  loop::EventLoop lp;
  loop::SocketAddress bound;
  Fd lst = iotest::listener(loop::SocketAddress::from_ip("127.0.0.1", 0), &bound);
  Fd client = iotest::stream_socket(AF_INET);
  ::connect(client, bound.data(), bound.size());  // non-blocking: lands in the backlog

  int err = 0;
  {
    NoFreeDescriptors limit;
    auto accept = [&]() -> loop::Coroutine<void> {
      try {
        auto [fd, peer] = co_await lp.sock_accept(lst);
        ::close(fd);
      } catch (const std::system_error& e) {
        err = e.code().value();
      }
    };
    lp.run_until_complete(accept());
  }
  CHECK(err == EMFILE);

  // The loop is fine: timers run, and with descriptors back the waiting client is accepted.
  bool ticked = false;
  lp.call_soon([&] { ticked = true; });
  auto accept_again = [&]() -> loop::Coroutine<loop::SocketAddress> {
    auto [fd, peer] = co_await loop::wait_for(lp.sock_accept(lst), 5.0);
    Fd conn(fd);
    co_await lp.sock_sendall(conn, "hi");
    co_return peer;
  };
  auto peer = lp.run_until_complete(accept_again());
  CHECK(ticked);
  CHECK(peer.host() == "127.0.0.1");
  char buf[4] = {};
  for (int i = 0; i < 100 && ::recv(client, buf, sizeof buf, MSG_DONTWAIT) <= 0; ++i)
    ::usleep(10000);
  CHECK(std::string(buf, 2) == "hi");
  lp.close();
}

TEST_CASE("emfile: many accepts in a row out of descriptors, every one an exception") {
  loop::EventLoop lp;
  loop::SocketAddress bound;
  Fd lst = iotest::listener(loop::SocketAddress::from_ip("127.0.0.1", 0), &bound);
  std::vector<Fd> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(iotest::stream_socket(AF_INET));
    ::connect(clients.back(), bound.data(), bound.size());
  }
  int emfiles = 0;
  {
    NoFreeDescriptors limit;
    auto accept_all = [&]() -> loop::Coroutine<void> {
      for (int i = 0; i < 20; ++i) {
        try {
          auto [fd, peer] = co_await lp.sock_accept(lst);
          ::close(fd);
        } catch (const std::system_error& e) {
          if (e.code().value() == EMFILE) ++emfiles;
        }
      }
    };
    lp.run_until_complete(accept_all());
  }
  CHECK(emfiles == 20);
  int accepted = 0;
  auto accept_now = [&]() -> loop::Coroutine<void> {
    for (int i = 0; i < 8; ++i) {
      auto [fd, peer] = co_await loop::wait_for(lp.sock_accept(lst), 5.0);
      ::close(fd);
      ++accepted;
    }
  };
  lp.run_until_complete(accept_now());
  CHECK(accepted == 8);
  lp.close();
}

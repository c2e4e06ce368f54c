// create_connection / create_unix_connection / connect_accepted_socket: addresses, options
// and the errors a caller sees.
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <loop/loop.hpp>

#include "python_script_peer.hpp"
#include "transport_helpers.hpp"

using test::RecordingProtocol;

namespace {

// A port nobody listens on: bound, then closed.
int closed_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  auto a = loop::SocketAddress::from_ip("127.0.0.1", 0);
  ::bind(s, a.data(), a.size());
  int port = loop::SocketAddress(a).port();
  port = ([&] {
    loop::SocketAddress b;
    socklen_t len = loop::SocketAddress::capacity();
    ::getsockname(s, b.data(), &len);
    b.set_size(len);
    return b.port();
  })();
  ::close(s);
  return port;
}

// A C++ echo protocol for the server side.
struct Echo : loop::Protocol {
  loop::Transport* t = nullptr;
  void connection_made(loop::BaseTransport& tr) override {
    t = dynamic_cast<loop::Transport*>(&tr);
  }
  void data_received(std::string_view d) override { t->write(d); }
};

// Connects, sends `msg`, returns the echo.
loop::Coroutine<std::string> echo_once(loop::EventLoop& lp,
                                       loop::Coroutine<loop::ConnectionPair<RecordingProtocol>> c,
                                       std::string msg) {
  auto [t, p] = co_await std::move(c);
  t->write(msg);
  for (int i = 0; i < 500 && p->received.size() < msg.size(); ++i) co_await loop::sleep(0.01);
  t->close();
  (void)lp;
  co_return p->received;
}

}  // namespace

TEST_CASE("a refused connect names the address") {
  loop::EventLoop lp;
  int port = closed_port();
  auto f = [] { return std::make_shared<RecordingProtocol>(); };
  try {
    lp.run_until_complete(lp.create_connection(f, "127.0.0.1", port));
    FAIL("connected to a closed port");
  } catch (const std::system_error& e) {
    REQUIRE(e.code().value() == ECONNREFUSED);
    REQUIRE_THAT(e.what(), Catch::Contains("Connect call failed ('127.0.0.1', " +
                                           std::to_string(port) + ")"));
  }
}

TEST_CASE("an unreachable address gives a clear error naming it") {
  loop::EventLoop lp;
  auto f = [] { return std::make_shared<RecordingProtocol>(); };
  // A multicast destination has no route for TCP: ENETUNREACH at once.
  try {
    lp.run_until_complete(lp.create_connection(f, "224.0.0.1", 9));
    FAIL("connected to an unreachable address");
  } catch (const std::system_error& e) {
    REQUIRE(e.code().value() == ENETUNREACH);
    REQUIRE_THAT(e.what(), Catch::Contains("('224.0.0.1', 9)"));
  }
}

TEST_CASE("create_connection tries every address, the errors of all combined") {
  loop::EventLoop lp;
  auto f = [] { return std::make_shared<RecordingProtocol>(); };
  // No host: getaddrinfo gives the loopback addresses of both families, ::1 first.
  int port = closed_port();
  try {
    lp.run_until_complete(lp.create_connection(f, "", port));
    FAIL("connected to a closed port");
  } catch (const loop::MultipleConnectErrors& e) {
    std::string w = e.what();
    REQUIRE_THAT(w, Catch::StartsWith("Multiple exceptions: "));
    // asyncio's str() of each error: "[Errno 111] Connect call failed ('::1', PORT, 0, 0)".
    const std::string p = std::to_string(port);
    REQUIRE_THAT(w, Catch::Contains("[Errno 111] Connect call failed ('::1', " + p + ", 0, 0)"));
    REQUIRE_THAT(w, Catch::Contains("[Errno 111] Connect call failed ('127.0.0.1', " + p + ")"));
    // An OSError as in asyncio: what a single refused address raises, with every error kept.
    const std::system_error& as_os_error = e;
    CHECK(as_os_error.code().value() == ECONNREFUSED);
    REQUIRE(e.errors.size() == 2);
    CHECK_THROWS_AS(std::rethrow_exception(e.errors[1]), std::system_error);
  }
  // A server on 127.0.0.1 only: ::1 is refused, then 127.0.0.1 connects.
  auto main = [&]() -> loop::Coroutine<std::string> {
    auto srv = co_await lp.create_server([] { return std::make_shared<Echo>(); }, "127.0.0.1", 0);
    int p = srv->sockets().at(0).port();
    std::string got = co_await echo_once(lp, lp.create_connection(f, "", p), "multi");
    srv->close();
    co_return got;
  };
  REQUIRE(lp.run_until_complete(main()) == "multi");
}

TEST_CASE("IPv6 on ::1, server and client") {
  loop::EventLoop lp;
  auto main = [&]() -> loop::Coroutine<void> {
    auto srv = co_await lp.create_server([] { return std::make_shared<Echo>(); }, "::1", 0);
    auto addr = srv->sockets().at(0);
    REQUIRE(addr.family() == AF_INET6);
    auto [t, p] = co_await lp.create_connection(
        [] { return std::make_shared<RecordingProtocol>(); }, "::1", addr.port());
    REQUIRE(t->extra<loop::SocketAddress>("peername")->to_string() == addr.to_string());
    t->write("six");
    for (int i = 0; i < 500 && p->received.size() < 3; ++i) co_await loop::sleep(0.01);
    REQUIRE(p->received == "six");
    t->close();
    srv->close();
    co_await srv->wait_closed();
  };
  lp.run_until_complete(main());
}

TEST_CASE("abstract and path unix sockets") {
  loop::EventLoop lp;
  std::string abstract = "@libloop-test-" + std::to_string(::getpid());
  std::string path = std::string("/tmp/libloop-test-") + std::to_string(::getpid()) + ".sock";
  auto main = [&](std::string where) -> loop::Coroutine<std::string> {
    auto srv = co_await lp.create_unix_server([] { return std::make_shared<Echo>(); }, where);
    REQUIRE(srv->sockets().at(0).to_string() == "unix:" + where);
    auto f = [] { return std::make_shared<RecordingProtocol>(); };
    std::string got = co_await echo_once(lp, lp.create_unix_connection(f, where), "unix!");
    srv->close();
    co_return got;
  };
  REQUIRE(lp.run_until_complete(main(abstract)) == "unix!");
  REQUIRE(lp.run_until_complete(main(path)) == "unix!");
  ::unlink(path.c_str());
}

TEST_CASE("an abstract name spelled with a leading NUL, as Python writes it, is the same name") {
  loop::EventLoop lp;
  std::string name = "libloop-nul-" + std::to_string(::getpid());
  std::string nul = std::string(1, '\0') + name;
  auto main = [&]() -> loop::Coroutine<std::string> {
    auto srv = co_await lp.create_unix_server([] { return std::make_shared<Echo>(); }, nul);
    CHECK(srv->sockets().at(0).to_string() == "unix:@" + name);  // no trailing NUL bound
    auto f = [] { return std::make_shared<RecordingProtocol>(); };
    std::string got = co_await echo_once(lp, lp.create_unix_connection(f, "@" + name), "nul");
    srv->close();
    co_return got;
  };
  REQUIRE(lp.run_until_complete(main()) == "nul");
  CHECK_THROWS_AS(loop::SocketAddress::from_unix_path(std::string("/tmp/a\0b", 8)),
                  std::invalid_argument);
}

TEST_CASE("sock, local_addr and connect_accepted_socket") {
  loop::EventLoop lp;
  auto main = [&]() -> loop::Coroutine<void> {
    auto srv = co_await lp.create_server([] { return std::make_shared<Echo>(); }, "127.0.0.1", 0);
    int port = srv->sockets().at(0).port();
    auto f = [] { return std::make_shared<RecordingProtocol>(); };
    // local_addr: bound to the port we pick.
    int local_port = closed_port();
    loop::ConnectionOptions o;
    o.local_addr = std::pair<std::string, int>{"127.0.0.1", local_port};
    auto [t1, p1] = co_await lp.create_connection(f, "127.0.0.1", port, o);
    REQUIRE(t1->extra<loop::SocketAddress>("sockname")->port() == local_port);
    t1->close();
    // sock: an already connected socket (blocking; the loop makes it non-blocking).
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    auto a = loop::SocketAddress::from_ip("127.0.0.1", static_cast<unsigned short>(port));
    REQUIRE(::connect(s, a.data(), a.size()) == 0);
    loop::ConnectionOptions so;
    so.sock = s;
    std::string got = co_await echo_once(lp, lp.create_connection(f, so), "sock");
    REQUIRE(got == "sock");
    // connect_accepted_socket: the server side of a socketpair.
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    auto [t3, p3] =
        co_await lp.connect_accepted_socket([] { return std::make_shared<Echo>(); }, sv[0]);
    REQUIRE(::write(sv[1], "pair", 4) == 4);
    char buf[4];
    co_await loop::sleep(0.05);
    REQUIRE(::read(sv[1], buf, 4) == 4);
    REQUIRE(std::string(buf, 4) == "pair");
    ::close(sv[1]);
    srv->close();
  };
  lp.run_until_complete(main());
}

TEST_CASE("connect_accepted_socket refuses the options it has no use for") {
  // asyncio's connect_accepted_socket has sock, ssl and ssl_handshake_timeout only; options
  // shared with create_connection are refused instead of dropped, and the socket stays ours.
  loop::EventLoop lp;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  auto f = [] { return std::make_shared<RecordingProtocol>(); };
  std::vector<loop::ConnectionOptions> refused(5);
  refused[0].family = AF_INET6;
  refused[1].proto = IPPROTO_TCP;
  refused[2].flags = AI_NUMERICHOST;
  refused[3].local_addr = std::pair<std::string, int>{"127.0.0.1", 0};
  refused[4].sock = sv[1];
  for (auto& o : refused)
    CHECK_THROWS_AS(lp.run_until_complete(lp.connect_accepted_socket(f, sv[0], o)),
                    std::invalid_argument);
  CHECK(::write(sv[0], "x", 1) == 1);  // still open
  ::close(sv[0]);
  ::close(sv[1]);
  lp.close();
}

TEST_CASE("connect_accepted_socket on an unconnected socket: peername is None, not an address") {
  // Python 3.11: get_extra_info('peername') and get_extra_info('peername', 'dflt') are both
  // None (getpeername failed: ENOTCONN); sockname is ('0.0.0.0', 0).
  loop::EventLoop lp;
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(s >= 0);
  auto main = [&]() -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.connect_accepted_socket(
        [] { return std::make_shared<RecordingProtocol>(); }, s);
    CHECK_FALSE(t->get_extra_info("peername").has_value());
    CHECK_FALSE(t->get_extra_info("peername", std::string("dflt")).has_value());
    CHECK_FALSE(t->extra<loop::SocketAddress>("peername"));
    auto local = t->extra<loop::SocketAddress>("sockname");
    REQUIRE(local);
    CHECK(local->to_string() == "0.0.0.0:0");
    t->close();
    co_await loop::sleep(0.01);
  };
  lp.run_until_complete(main());
}

TEST_CASE("bad option combinations are refused with std::invalid_argument") {
  loop::EventLoop lp;
  auto f = [] { return std::make_shared<RecordingProtocol>(); };
  loop::ConnectionOptions both;
  both.sock = 0;
  REQUIRE_THROWS_AS(lp.run_until_complete(lp.create_connection(f, "127.0.0.1", 1, both)),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(lp.run_until_complete(lp.create_connection(f, loop::ConnectionOptions{})),
                    std::invalid_argument);
  loop::ConnectionOptions hostname;
  hostname.server_hostname = "example.com";
  REQUIRE_THROWS_AS(lp.run_until_complete(lp.create_connection(f, "127.0.0.1", 1, hostname)),
                    std::invalid_argument);
  // The ssl option's own checks are in tests/unit/tls/test_tls_sockets.cpp.
  int dgram = ::socket(AF_INET, SOCK_DGRAM, 0);
  loop::ConnectionOptions udp;
  udp.sock = dgram;
  REQUIRE_THROWS_AS(lp.run_until_complete(lp.create_connection(f, udp)), std::invalid_argument);
  ::close(dgram);
}

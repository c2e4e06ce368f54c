// The options and argument checks of create_server, create_unix_server, create_connection,
// create_unix_connection and create_datagram_endpoint that the spec lists (asyncio 3.7 docs),
// each asserting what asyncio does (checked against CPython 3.11's asyncio).
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <loop/loop.hpp>
#include <string>
#include <system_error>
#include <vector>

#include "transport_helpers.hpp"

using test::RecordingProtocol;

namespace {

using ServerPtr = std::shared_ptr<loop::Server>;

auto recording_factory = [] { return std::make_shared<RecordingProtocol>(); };

struct NullDatagram : loop::DatagramProtocol {};
auto datagram_factory = [] { return std::make_shared<NullDatagram>(); };

// A socket fd closed on scope exit (unless released to a loop API that took it).
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  operator int() const { return fd; }
};

Fd make_socket(int family, int type) {
  int fd = ::socket(family, type | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  return Fd(fd);
}

int int_sockopt(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  REQUIRE(::getsockopt(fd, level, name, &v, &len) == 0);
  return v;
}

// Whether this host can bind a socket to ::1 (IPv6 parts are skipped otherwise).
bool ipv6_loopback_available() {
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  auto a = loop::SocketAddress::from_ip("::1", 0);
  bool ok = ::bind(fd, a.data(), a.size()) == 0;
  ::close(fd);
  return ok;
}

// Runs `f`; expects it to throw E and returns what() (any other outcome fails the test).
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("no exception was thrown");
  return {};
}

// The EAI_* code of the GaiError `f` throws; checks that it is a std::system_error too.
template <class F>
int gai_error_of(F&& f) {
  try {
    f();
  } catch (const loop::GaiError& e) {
    CHECK(dynamic_cast<const std::system_error*>(&e) != nullptr);
    CHECK(e.code().category() == loop::gai_category());
    return e.code().value();
  }
  FAIL("no GaiError was thrown");
  return 0;
}

ServerPtr listen_on(loop::EventLoop& lp, const std::string& host, loop::ServerOptions o = {},
                    int port = 0) {
  return lp.run_until_complete(lp.create_server(recording_factory, host, port, o));
}

// close() then wait_closed(), bounded.
void close_server(loop::EventLoop& lp, const ServerPtr& s) {
  s->close();
  lp.run_until_complete(loop::wait_for(s->wait_closed(), 10));
}

// Closes a client transport and runs the loop until its connection_lost ran.
void close_client(loop::EventLoop& lp, loop::Transport& t, RecordingProtocol& p) {
  t.close();
  test::run_until(
      lp, [&] { return p.lost; }, 10);
}

// Two iterations: closed transports reach connection_lost.
void drain(loop::EventLoop& lp) {
  for (int i = 0; i < 2; ++i) {
    lp.call_soon([&lp] { lp.stop(); });
    lp.run_forever();
  }
}

int port_of(const ServerPtr& s) {
  return s->sockets().at(0).port();
}

}  // namespace

// ---- create_server ------------------------------------------------------------------------

TEST_CASE("create_server: reuse_address sets or clears SO_REUSEADDR, on by default") {
  // asyncio on UNIX: reuse_address=None means True; False leaves SO_REUSEADDR at 0.
  loop::EventLoop lp;
  struct Case {
    std::optional<bool> reuse;
    int expected;
  };
  for (Case c : {Case{std::nullopt, 1}, Case{true, 1}, Case{false, 0}}) {
    loop::ServerOptions o;
    o.reuse_address = c.reuse;
    auto srv = listen_on(lp, "127.0.0.1", o);
    auto fds = srv->socket_fds();
    REQUIRE(fds.size() == 1);
    CHECK(int_sockopt(fds[0], SOL_SOCKET, SO_REUSEADDR) == c.expected);
    CHECK(int_sockopt(fds[0], SOL_SOCKET, SO_REUSEPORT) == 0);
    close_server(lp, srv);
  }
  lp.close();
}

TEST_CASE("create_server: reuse_port sets SO_REUSEPORT and lets two servers share a port") {
  // asyncio: reuse_port=True sets SO_REUSEPORT; a second server with it binds the same port,
  // a third without it fails with EADDRINUSE.
  loop::EventLoop lp;
  loop::ServerOptions o;
  o.reuse_port = true;
  auto a = listen_on(lp, "127.0.0.1", o);
  REQUIRE(a->socket_fds().size() == 1);
  CHECK(int_sockopt(a->socket_fds()[0], SOL_SOCKET, SO_REUSEPORT) == 1);
  CHECK(int_sockopt(a->socket_fds()[0], SOL_SOCKET, SO_REUSEADDR) == 1);
  int port = port_of(a);
  auto b = listen_on(lp, "127.0.0.1", o, port);
  CHECK(port_of(b) == port);
  CHECK(int_sockopt(b->socket_fds()[0], SOL_SOCKET, SO_REUSEPORT) == 1);
  try {
    auto c = listen_on(lp, "127.0.0.1", {}, port);
    close_server(lp, c);
    FAIL("a server without reuse_port bound a port in use");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EADDRINUSE);
  }
  close_server(lp, b);
  close_server(lp, a);
  lp.close();
}

TEST_CASE("create_server: family restricts the addresses listened on") {
  loop::EventLoop lp;
  // "localhost" with AF_INET: IPv4 sockets only, on 127.0.0.1.
  loop::ServerOptions inet;
  inet.family = AF_INET;
  auto v4 = listen_on(lp, "localhost", inet);
  REQUIRE_FALSE(v4->sockets().empty());
  for (auto& a : v4->sockets()) {
    CHECK(a.family() == AF_INET);
    CHECK(a.host() == "127.0.0.1");
  }
  close_server(lp, v4);
  // A numeric host of the other family: asyncio's getaddrinfo fails (gaierror EAI_ADDRFAMILY).
  loop::ServerOptions inet6;
  inet6.family = AF_INET6;
  int code = gai_error_of([&] { listen_on(lp, "127.0.0.1", inet6); });
  CHECK((code == EAI_ADDRFAMILY || code == EAI_NONAME));
  code = gai_error_of([&] { listen_on(lp, "::1", inet); });
  CHECK((code == EAI_ADDRFAMILY || code == EAI_NONAME));
  if (!ipv6_loopback_available()) {
    WARN("::1 cannot be bound here: the IPv6 part is skipped");
    lp.close();
    return;
  }
  auto v6 = listen_on(lp, "::1", inet6);
  REQUIRE(v6->sockets().size() == 1);
  CHECK(v6->sockets()[0].family() == AF_INET6);
  CHECK(v6->sockets()[0].host() == "::1");
  close_server(lp, v6);
  // "localhost" with AF_INET6: only IPv6 sockets on ::1 where the name has an IPv6 address
  // (/etc/hosts may give it none: then getaddrinfo fails, as in asyncio).
  bool localhost6 = true;
  try {
    auto infos = lp.run_until_complete(lp.getaddrinfo("localhost", "0", AF_INET6, SOCK_STREAM));
    localhost6 = !infos.empty();
  } catch (const loop::GaiError&) {
    localhost6 = false;
  }
  if (localhost6) {
    auto srv = listen_on(lp, "localhost", inet6);
    REQUIRE_FALSE(srv->sockets().empty());
    for (auto& a : srv->sockets()) {
      CHECK(a.family() == AF_INET6);
      CHECK(a.host() == "::1");
    }
    close_server(lp, srv);
  } else {
    WARN("localhost has no IPv6 address here: that part is skipped");
  }
  lp.close();
}

TEST_CASE("create_server: flags are passed to getaddrinfo") {
  // asyncio: flags=AI_PASSIVE|AI_NUMERICHOST with a name fails with socket.gaierror
  // (EAI_NONAME); a numeric host is fine.
  loop::EventLoop lp;
  loop::ServerOptions o;
  o.flags = AI_PASSIVE | AI_NUMERICHOST;
  int code = gai_error_of([&] { listen_on(lp, "localhost", o); });
  CHECK(code == EAI_NONAME);
  auto srv = listen_on(lp, "127.0.0.1", o);
  REQUIRE(srv->sockets().size() == 1);
  CHECK(srv->sockets()[0].host() == "127.0.0.1");
  close_server(lp, srv);
  lp.close();
}

TEST_CASE("create_server: host/port with sock, neither of them, a datagram sock") {
  loop::EventLoop lp;
  Fd sock = make_socket(AF_INET, SOCK_STREAM);
  auto any = loop::SocketAddress::from_ip("127.0.0.1", 0);
  REQUIRE(::bind(sock, any.data(), any.size()) == 0);
  loop::ServerOptions with_sock;
  with_sock.sock = sock;
  CHECK(error_of<std::invalid_argument>([&] {
          lp.run_until_complete(lp.create_server(recording_factory, "127.0.0.1", 0, with_sock));
        }) == "host/port and sock can not be specified at the same time");
  CHECK(error_of<std::invalid_argument>([&] {
          lp.run_until_complete(lp.create_server(recording_factory, loop::ServerOptions{}));
        }) == "Neither host/port nor sock were specified");
  Fd udp = make_socket(AF_INET, SOCK_DGRAM);
  loop::ServerOptions with_udp;
  with_udp.sock = udp;
  CHECK_THAT(error_of<std::invalid_argument>(
                 [&] { lp.run_until_complete(lp.create_server(recording_factory, with_udp)); }),
             Catch::StartsWith("A Stream Socket was expected"));
  // The refused socket is still ours and usable: alone, it is listened on.
  with_sock.sock = sock.fd;
  sock.fd = -1;  // the server owns it from here
  auto srv = lp.run_until_complete(lp.create_server(recording_factory, with_sock));
  REQUIRE(srv->sockets().size() == 1);
  CHECK(srv->sockets()[0].host() == "127.0.0.1");
  CHECK(srv->is_serving());
  close_server(lp, srv);
  lp.close();
}

// ---- create_unix_server / create_unix_connection --------------------------------------------

TEST_CASE("create_unix_server: path with sock, neither of them, a socket that is not AF_UNIX") {
  loop::EventLoop lp;
  std::string path = "/tmp/loop_spec_options_" + std::to_string(::getpid()) + ".sock";
  std::filesystem::remove(path);
  Fd unix_sock = make_socket(AF_UNIX, SOCK_STREAM);
  loop::ServerOptions with_sock;
  with_sock.sock = unix_sock;
  CHECK(error_of<std::invalid_argument>([&] {
          lp.run_until_complete(lp.create_unix_server(recording_factory, path, with_sock));
        }) == "path and sock can not be specified at the same time");
  CHECK_FALSE(std::filesystem::exists(path));  // refused before anything was bound
  CHECK(error_of<std::invalid_argument>([&] {
          lp.run_until_complete(lp.create_unix_server(recording_factory, ""));
        }) == "path was not specified, and no sock specified");
  // asyncio checks family and type: an AF_INET stream socket and an AF_UNIX datagram socket
  // are both refused.
  Fd tcp = make_socket(AF_INET, SOCK_STREAM);
  Fd unix_dgram = make_socket(AF_UNIX, SOCK_DGRAM);
  for (int fd : {tcp.fd, unix_dgram.fd}) {
    loop::ServerOptions o;
    o.sock = fd;
    CHECK_THAT(error_of<std::invalid_argument>(
                   [&] { lp.run_until_complete(lp.create_unix_server(recording_factory, "", o)); }),
               Catch::StartsWith("A UNIX Domain Stream Socket was expected"));
  }
  lp.close();
}

TEST_CASE("create_unix_connection: path with sock, neither of them, a socket that is not AF_UNIX") {
  loop::EventLoop lp;
  Fd unix_sock = make_socket(AF_UNIX, SOCK_STREAM);
  loop::ConnectionOptions with_sock;
  with_sock.sock = unix_sock;
  CHECK(error_of<std::invalid_argument>([&] {
          lp.run_until_complete(
              lp.create_unix_connection(recording_factory, "/tmp/no-such.sock", with_sock));
        }) == "path and sock can not be specified at the same time");
  CHECK(error_of<std::invalid_argument>([&] {
          lp.run_until_complete(lp.create_unix_connection(recording_factory, ""));
        }) == "no path and sock were specified");
  Fd tcp = make_socket(AF_INET, SOCK_STREAM);
  loop::ConnectionOptions with_tcp;
  with_tcp.sock = tcp;
  CHECK_THAT(error_of<std::invalid_argument>([&] {
               lp.run_until_complete(lp.create_unix_connection(recording_factory, "", with_tcp));
             }),
             Catch::StartsWith("A UNIX Domain Stream Socket was expected"));
  lp.close();
}

// ---- create_connection ----------------------------------------------------------------------

TEST_CASE("create_connection: family selects the addresses tried, proto the socket's") {
  loop::EventLoop lp;
  auto srv = listen_on(lp, "127.0.0.1");
  int port = port_of(srv);
  // AF_INET: "localhost" and 127.0.0.1 connect; with IPPROTO_TCP, over a TCP socket.
  for (std::string host : {"localhost", "127.0.0.1"}) {
    loop::ConnectionOptions o;
    o.family = AF_INET;
    o.proto = IPPROTO_TCP;
    auto [t, p] = lp.run_until_complete(lp.create_connection(recording_factory, host, port, o));
    auto peer = t->extra<loop::SocketAddress>("peername");
    REQUIRE(peer);
    CHECK(peer->family() == AF_INET);
    CHECK(peer->to_string() == "127.0.0.1:" + std::to_string(port));
    auto fd = t->extra<int>("socket");
    REQUIRE(fd);
    CHECK(int_sockopt(*fd, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP);
    close_client(lp, *t, *p);
  }
  // AF_INET6 to a server that listens on 127.0.0.1 only: asyncio fails with an OSError,
  // socket.gaierror for the numeric IPv4 host (EAI_ADDRFAMILY).
  loop::ConnectionOptions v6;
  v6.family = AF_INET6;
  int code = gai_error_of([&] {
    lp.run_until_complete(lp.create_connection(recording_factory, "127.0.0.1", port, v6));
  });
  CHECK((code == EAI_ADDRFAMILY || code == EAI_NONAME));
  // "localhost": gaierror where it has no IPv6 address, else ECONNREFUSED on ::1.
  CHECK_THROWS_AS(
      lp.run_until_complete(lp.create_connection(recording_factory, "localhost", port, v6)),
      std::system_error);
  close_server(lp, srv);
  lp.close();
}

TEST_CASE("create_connection: a proto that does not fit the stream socket, with a name") {
  loop::EventLoop lp;
  auto srv = listen_on(lp, "127.0.0.1");
  int port = port_of(srv);
  // IPPROTO_UDP with a stream socket for a name: getaddrinfo refuses (asyncio: gaierror
  // EAI_SOCKTYPE, "ai_socktype not supported").
  loop::ConnectionOptions udp;
  udp.proto = IPPROTO_UDP;
  int code = gai_error_of([&] {
    lp.run_until_complete(lp.create_connection(recording_factory, "localhost", port, udp));
  });
  CHECK(code == EAI_SOCKTYPE);
  close_server(lp, srv);
  lp.close();
}

TEST_CASE("create_connection: flags are passed to getaddrinfo") {
  // asyncio: flags=AI_NUMERICHOST with a name fails with socket.gaierror (an OSError,
  // EAI_NONAME); with a numeric host it connects.
  loop::EventLoop lp;
  auto srv = listen_on(lp, "127.0.0.1");
  int port = port_of(srv);
  loop::ConnectionOptions o;
  o.flags = AI_NUMERICHOST;
  int code = gai_error_of([&] {
    lp.run_until_complete(lp.create_connection(recording_factory, "localhost", port, o));
  });
  CHECK(code == EAI_NONAME);
  try {
    lp.run_until_complete(lp.create_connection(recording_factory, "localhost", port, o));
    FAIL("AI_NUMERICHOST resolved a name");
  } catch (const std::system_error& e) {  // caught as the OSError it is
    CHECK(e.code().category() == loop::gai_category());
  }
  auto [t, p] =
      lp.run_until_complete(lp.create_connection(recording_factory, "127.0.0.1", port, o));
  CHECK(p->events.at(0) == "connection_made");
  close_client(lp, *t, *p);
  close_server(lp, srv);
  lp.close();
}

// ---- create_datagram_endpoint ---------------------------------------------------------------

TEST_CASE("create_datagram_endpoint: proto and flags are passed to getaddrinfo") {
  loop::EventLoop lp;
  // proto=IPPROTO_UDP: a UDP socket, for a name and a numeric host.
  for (std::string host : {"localhost", "127.0.0.1"}) {
    loop::DatagramEndpointOptions o;
    o.local_addr = loop::HostPort{host, 0};
    o.family = AF_INET;
    o.proto = IPPROTO_UDP;
    auto [t, p] = lp.run_until_complete(lp.create_datagram_endpoint(datagram_factory, o));
    auto fd = t->extra<int>("socket");
    REQUIRE(fd);
    CHECK(int_sockopt(*fd, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_UDP);
    CHECK(int_sockopt(*fd, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM);
    auto local = t->extra<loop::SocketAddress>("sockname");
    REQUIRE(local);
    CHECK(local->host() == "127.0.0.1");
    t->close();
  }
  // proto=IPPROTO_TCP for a datagram socket and a name: gaierror EAI_SOCKTYPE in asyncio.
  loop::DatagramEndpointOptions tcp;
  tcp.local_addr = loop::HostPort{"localhost", 0};
  tcp.proto = IPPROTO_TCP;
  CHECK(gai_error_of([&] {
          lp.run_until_complete(lp.create_datagram_endpoint(datagram_factory, tcp));
        }) == EAI_SOCKTYPE);
  // flags=AI_NUMERICHOST: a name fails (gaierror EAI_NONAME), a numeric host binds.
  loop::DatagramEndpointOptions numeric;
  numeric.flags = AI_NUMERICHOST;
  numeric.local_addr = loop::HostPort{"localhost", 0};
  CHECK(gai_error_of([&] {
          lp.run_until_complete(lp.create_datagram_endpoint(datagram_factory, numeric));
        }) == EAI_NONAME);
  numeric.local_addr = loop::HostPort{"127.0.0.1", 0};
  auto [t, p] = lp.run_until_complete(lp.create_datagram_endpoint(datagram_factory, numeric));
  CHECK(t->extra<loop::SocketAddress>("sockname")->host() == "127.0.0.1");
  t->close();
  drain(lp);
  lp.close();
}

TEST_CASE("create_datagram_endpoint: a local_addr that cannot be resolved") {
  loop::EventLoop lp;
  // A name that does not resolve: asyncio raises the resolver's socket.gaierror (here
  // loop::GaiError, a std::system_error) naming nothing else.
  loop::DatagramEndpointOptions bad;
  bad.local_addr = loop::HostPort{"no-such-host.invalid", 0};
  int code = gai_error_of(
      [&] { lp.run_until_complete(lp.create_datagram_endpoint(datagram_factory, bad)); });
  CHECK((code == EAI_NONAME || code == EAI_AGAIN || code == EAI_FAIL));
  // A numeric host of another family than the one asked for: gaierror EAI_ADDRFAMILY.
  loop::DatagramEndpointOptions other_family;
  other_family.local_addr = loop::HostPort{"127.0.0.1", 0};
  other_family.family = AF_INET6;
  code = gai_error_of(
      [&] { lp.run_until_complete(lp.create_datagram_endpoint(datagram_factory, other_family)); });
  CHECK((code == EAI_ADDRFAMILY || code == EAI_NONAME));
  // local and remote addresses that resolve to no common family: asyncio raises
  // ValueError('can not get address information'); libloop std::invalid_argument, the same text.
  loop::DatagramEndpointOptions unpaired;
  unpaired.local_addr = loop::HostPort{"127.0.0.1", 0};
  unpaired.remote_addr = loop::HostPort{"::1", 9};
  CHECK(error_of<std::invalid_argument>([&] {
          lp.run_until_complete(lp.create_datagram_endpoint(datagram_factory, unpaired));
        }) == "can not get address information");
  lp.close();
}

// asyncio's _ipaddr_info: with a numeric host, a TCP or UDP proto follows the socket type.
TEST_CASE("create_connection: proto=IPPROTO_UDP with a numeric host connects over TCP") {
  loop::EventLoop lp;
  auto srv = listen_on(lp, "127.0.0.1");
  int port = port_of(srv);
  loop::ConnectionOptions o;
  o.proto = IPPROTO_UDP;
  auto [t, p] =
      lp.run_until_complete(lp.create_connection(recording_factory, "127.0.0.1", port, o));
  CHECK(int_sockopt(*t->extra<int>("socket"), SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP);
  close_client(lp, *t, *p);
  close_server(lp, srv);
  lp.close();
}

TEST_CASE("create_datagram_endpoint: proto=IPPROTO_TCP with a numeric host binds a UDP socket") {
  loop::EventLoop lp;
  loop::DatagramEndpointOptions o;
  o.local_addr = loop::HostPort{"127.0.0.1", 0};
  o.proto = IPPROTO_TCP;
  auto [t, p] = lp.run_until_complete(lp.create_datagram_endpoint(datagram_factory, o));
  CHECK(int_sockopt(*t->extra<int>("socket"), SOL_SOCKET, SO_PROTOCOL) == IPPROTO_UDP);
  t->close();
  drain(lp);
  lp.close();
}

// create_datagram_endpoint and DatagramTransport (asyncio's _SelectorDatagramTransport), with
// Python's socket module as the real peer where one is useful.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <loop/loop.hpp>
#include <string>
#include <system_error>
#include <vector>

#include "python_peer.hpp"
#include "transports/datagram_endpoint.hpp"

namespace {

// Records every callback in order; echoes datagrams when `echo` is set.
struct Recorder : loop::DatagramProtocol {
  loop::EventLoop* lp = nullptr;
  loop::DatagramTransport* transport = nullptr;
  std::vector<std::string> events;
  std::vector<std::pair<std::string, loop::SocketAddress>> datagrams;
  std::vector<std::exception_ptr> errors;
  bool lost = false;
  std::exception_ptr lost_exc;
  bool echo = false;
  bool stop_on_datagram = false;
  bool stop_on_error = false;

  void connection_made(loop::BaseTransport& t) override {
    events.push_back("connection_made");
    transport = dynamic_cast<loop::DatagramTransport*>(&t);
  }
  void datagram_received(std::string_view data, const loop::SocketAddress& addr) override {
    events.push_back("datagram_received");
    datagrams.emplace_back(std::string(data), addr);
    if (echo) transport->sendto(data, addr);
    if (stop_on_datagram) lp->stop();
  }
  void error_received(std::exception_ptr e) override {
    events.push_back("error_received");
    errors.push_back(e);
    if (stop_on_error) lp->stop();
  }
  void connection_lost(std::exception_ptr e) override {
    events.push_back("connection_lost");
    lost = true;
    lost_exc = e;
  }
};

loop::DatagramEndpointOptions local(const std::string& host) {
  loop::DatagramEndpointOptions o;
  o.local_addr = loop::SocketAddress::from_ip(host, 0);
  return o;
}

// Runs the loop until a callback stops it, with a guard so a broken test cannot hang.
void run_bounded(loop::EventLoop& lp, double seconds = 10) {
  bool timed_out = false;
  auto guard = lp.call_later(seconds, [&] {
    timed_out = true;
    lp.stop();
  });
  lp.run_forever();
  guard.cancel();
  REQUIRE_FALSE(timed_out);
}

// One iteration: stop() before run_forever polls once and runs one batch (asyncio's rule).
void run_once(loop::EventLoop& lp) {
  lp.stop();
  lp.run_forever();
}

void close_and_drain(loop::EventLoop& lp, loop::DatagramTransport& t) {
  t.close();
  run_once(lp);
  run_once(lp);
}

using Endpoint = std::pair<std::shared_ptr<loop::DatagramTransport>, std::shared_ptr<Recorder>>;

// A server endpoint on `host` port 0, and a client endpoint whose remote_addr is the server.
std::pair<Endpoint, Endpoint> connected_pair(loop::EventLoop& lp, const std::string& host) {
  auto factory = [] { return std::make_shared<Recorder>(); };
  Endpoint server = lp.run_until_complete(lp.create_datagram_endpoint(factory, local(host)));
  server.second->lp = &lp;
  loop::DatagramEndpointOptions o;
  o.remote_addr = *server.first->extra<loop::SocketAddress>("sockname");
  Endpoint client = lp.run_until_complete(lp.create_datagram_endpoint(factory, o));
  client.second->lp = &lp;
  return {server, client};
}

bool ipv6_available() {
  int fd = ::socket(AF_INET6, SOCK_DGRAM, 0);
  if (fd < 0) return false;
  auto a = loop::SocketAddress::from_ip("::1", 0);
  bool ok = ::bind(fd, a.data(), a.size()) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

TEST_CASE("create_datagram_endpoint: echo server with a Python client") {
  loop::EventLoop lp;
  auto [t, p] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, local("127.0.0.1")));
  p->lp = &lp;
  p->echo = true;
  p->stop_on_datagram = true;
  auto sockname = t->extra<loop::SocketAddress>("sockname");
  REQUIRE(sockname);
  REQUIRE(sockname->port() != 0);
  REQUIRE_FALSE(t->extra<loop::SocketAddress>("peername"));  // not connected

  loop_test::PythonPeer client(R"(
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
port = int(sys.argv[1])
s.sendto(b'hello from python', ('127.0.0.1', port))
data, addr = s.recvfrom(1024)
print(data.decode())
print(addr[1] == port)
)",
                               {std::to_string(sockname->port())});
  run_bounded(lp);
  REQUIRE(client.read_line() == "hello from python");
  REQUIRE(client.read_line() == "True");
  REQUIRE(client.wait() == 0);
  REQUIRE(p->datagrams.size() == 1);
  REQUIRE(p->datagrams[0].first == "hello from python");
  REQUIRE(p->datagrams[0].second.host() == "127.0.0.1");
  close_and_drain(lp, *t);
  REQUIRE(p->events ==
          std::vector<std::string>{"connection_made", "datagram_received", "connection_lost"});
  REQUIRE(p->lost_exc == nullptr);
}

TEST_CASE("create_datagram_endpoint: client with remote_addr against a Python echo server") {
  loop_test::PythonPeer server(R"(
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', 0))
s.settimeout(10)
print(s.getsockname()[1], flush=True)
data, addr = s.recvfrom(1024)
s.sendto(data.upper(), addr)
print(data.decode(), flush=True)
)");
  int port = std::stoi(server.read_line());
  loop::EventLoop lp;
  loop::DatagramEndpointOptions o;
  o.remote_addr = loop::HostPort{"127.0.0.1", static_cast<unsigned short>(port)};
  auto [t, p] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
  p->lp = &lp;
  p->stop_on_datagram = true;
  auto peer = t->extra<loop::SocketAddress>("peername");
  REQUIRE(peer);
  REQUIRE(peer->to_string() == "127.0.0.1:" + std::to_string(port));
  t->sendto("ping");  // no address: goes to remote_addr
  run_bounded(lp);
  REQUIRE(server.read_line() == "ping");
  REQUIRE(server.wait() == 0);
  REQUIRE(p->datagrams.size() == 1);
  REQUIRE(p->datagrams[0].first == "PING");
  REQUIRE(p->datagrams[0].second == *peer);
  close_and_drain(lp, *t);
  REQUIRE(p->lost);
}

TEST_CASE("create_datagram_endpoint: a host name is resolved without blocking the loop") {
  loop::EventLoop lp;
  auto [srv, sp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, local("127.0.0.1")));
  sp->lp = &lp;
  sp->stop_on_datagram = true;
  loop::DatagramEndpointOptions o;
  o.family = AF_INET;
  o.remote_addr = loop::HostPort{"localhost", srv->extra<loop::SocketAddress>("sockname")->port()};
  // While getaddrinfo runs in the executor, the loop keeps running other callbacks.
  int ticks = 0;
  std::function<void()> tick = [&] {
    ++ticks;
    if (ticks < 1000) lp.call_soon(tick);
  };
  lp.call_soon(tick);
  auto [t, p] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
  REQUIRE(ticks >= 1);
  t->sendto("via localhost");
  run_bounded(lp);
  REQUIRE(sp->datagrams.at(0).first == "via localhost");
  close_and_drain(lp, *t);
  close_and_drain(lp, *srv);
}

TEST_CASE("create_datagram_endpoint: an unknown host raises GaiError, as create_connection") {
  // asyncio raises socket.gaierror from both; this one raised a plain runtime_error.
  loop::EventLoop lp;
  loop::DatagramEndpointOptions o;
  o.remote_addr = loop::HostPort{"no-such-host.invalid", 9};
  try {
    lp.run_until_complete(
        lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
    FAIL("an .invalid name resolved");
  } catch (const loop::GaiError& e) {
    CHECK_THAT(e.what(), Catch::Contains("no-such-host.invalid"));
  }
  lp.close();
}

TEST_CASE("DatagramTransport: an empty datagram is sent and received (asyncio 3.13)") {
  loop::EventLoop lp;
  auto [server, client] = connected_pair(lp, "127.0.0.1");
  server.second->stop_on_datagram = true;
  client.first->sendto("");
  run_bounded(lp);
  REQUIRE(server.second->datagrams.size() == 1);
  CHECK(server.second->datagrams.at(0).first.empty());
  close_and_drain(lp, *client.first);
  close_and_drain(lp, *server.first);
}

TEST_CASE("create_datagram_endpoint: a SocketAddress on one side, a host on the other") {
  // They pair by (family, proto): both are UDP, as asyncio's _ipaddr_info tags them.
  loop::EventLoop lp;
  auto [srv, sp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, local("127.0.0.1")));
  sp->lp = &lp;
  sp->stop_on_datagram = true;
  loop::DatagramEndpointOptions o = local("127.0.0.1");
  o.remote_addr = loop::HostPort{"127.0.0.1", srv->extra<loop::SocketAddress>("sockname")->port()};
  auto [t, p] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
  t->sendto("mixed");
  run_bounded(lp);
  REQUIRE(sp->datagrams.at(0).first == "mixed");
  close_and_drain(lp, *t);
  close_and_drain(lp, *srv);
}

TEST_CASE("create_datagram_endpoint: IPv6 ::1 round trip") {
  if (!ipv6_available()) {
    WARN("no IPv6 loopback here");
    return;
  }
  loop::EventLoop lp;
  auto [server, client] = connected_pair(lp, "::1");
  auto& [srv, sp] = server;
  auto& [cli, cp] = client;
  sp->echo = true;
  cp->stop_on_datagram = true;
  REQUIRE(cli->extra<loop::SocketAddress>("sockname")->family() == AF_INET6);
  cli->sendto("six");
  run_bounded(lp);
  REQUIRE(cp->datagrams.at(0).first == "six");
  REQUIRE(cp->datagrams.at(0).second.to_string().rfind("[::1]:", 0) == 0);
  close_and_drain(lp, *cli);
  close_and_drain(lp, *srv);
}

TEST_CASE("create_datagram_endpoint: unix datagram sockets, stale socket file replaced") {
  auto dir =
      std::filesystem::temp_directory_path() / ("libloop-dgram-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string srv_path = (dir / "srv.sock").string();
  std::string cli_path = (dir / "cli.sock").string();
  {
    // A stale socket file at the server's path, as a dead endpoint leaves it.
    int fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
    auto a = loop::SocketAddress::from_unix_path(srv_path);
    REQUIRE(::bind(fd, a.data(), a.size()) == 0);
    ::close(fd);
  }
  loop::EventLoop lp;
  loop::DatagramEndpointOptions so;
  so.local_addr = loop::SocketAddress::from_unix_path(srv_path);
  auto [srv, sp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, so));
  sp->lp = &lp;
  sp->echo = true;
  loop::DatagramEndpointOptions co;
  co.local_addr = loop::SocketAddress::from_unix_path(cli_path);  // replies need an address
  co.remote_addr = loop::SocketAddress::from_unix_path(srv_path);
  auto [cli, cp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, co));
  cp->lp = &lp;
  cp->stop_on_datagram = true;
  cli->sendto("over unix");
  run_bounded(lp);
  REQUIRE(sp->datagrams.at(0).second.to_string() == "unix:" + cli_path);
  REQUIRE(cp->datagrams.at(0).first == "over unix");
  REQUIRE(cp->datagrams.at(0).second.to_string() == "unix:" + srv_path);
  close_and_drain(lp, *cli);
  close_and_drain(lp, *srv);
  std::filesystem::remove_all(dir);
}

TEST_CASE("create_datagram_endpoint: abstract unix datagram names") {
  std::string name = "@libloop-dgram-" + std::to_string(::getpid());
  loop::EventLoop lp;
  loop::DatagramEndpointOptions so;
  so.local_addr = loop::SocketAddress::from_unix_path(name);
  auto [srv, sp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, so));
  sp->lp = &lp;
  sp->stop_on_datagram = true;
  loop::DatagramEndpointOptions co;
  co.remote_addr = loop::SocketAddress::from_unix_path(name);
  auto [cli, cp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, co));
  cli->sendto("abstract");
  run_bounded(lp);
  REQUIRE(sp->datagrams.at(0).first == "abstract");
  REQUIRE(srv->extra<loop::SocketAddress>("sockname")->to_string() == "unix:" + name);
  close_and_drain(lp, *cli);
  close_and_drain(lp, *srv);
}

TEST_CASE("DatagramTransport: sending to a closed port gives error_received(ECONNREFUSED)") {
  // A port nobody listens on: bind, read the port, close.
  int probe = ::socket(AF_INET, SOCK_DGRAM, 0);
  auto a = loop::SocketAddress::from_ip("127.0.0.1", 0);
  REQUIRE(::bind(probe, a.data(), a.size()) == 0);
  socklen_t len = loop::SocketAddress::capacity();
  ::getsockname(probe, a.data(), &len);
  a.set_size(len);
  ::close(probe);

  loop::EventLoop lp;
  loop::DatagramEndpointOptions o;
  o.remote_addr = a;
  auto [t, p] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
  p->lp = &lp;
  p->stop_on_error = true;
  t->sendto("anyone?");
  run_bounded(lp);
  REQUIRE(p->errors.size() >= 1);
  try {
    std::rethrow_exception(p->errors[0]);
  } catch (const std::system_error& e) {
    REQUIRE(e.code().value() == ECONNREFUSED);
  }
  // The transport stays usable after an error_received (asyncio does not close it).
  REQUIRE_FALSE(t->is_closing());
  REQUIRE_FALSE(p->lost);
  close_and_drain(lp, *t);
  REQUIRE(p->lost);
}

TEST_CASE("create_datagram_endpoint: reuse_address=true is refused") {
  loop::EventLoop lp;
  auto o = local("127.0.0.1");
  o.reuse_address = true;
  try {
    lp.run_until_complete(
        lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
    FAIL("reuse_address=true was accepted");
  } catch (const std::invalid_argument& e) {
    REQUIRE(std::string(e.what()).find("Passing `reuse_address=True` is no longer supported") !=
            std::string::npos);
  }
  // reuse_address=false is accepted (only true is dangerous).
  o.reuse_address = false;
  auto [t, p] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
  close_and_drain(lp, *t);
}

TEST_CASE("create_datagram_endpoint: allow_broadcast sets SO_BROADCAST, reuse_port SO_REUSEPORT") {
  loop::EventLoop lp;
  auto opt = [](loop::DatagramTransport& t, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    REQUIRE(::getsockopt(*t.extra<int>("socket"), SOL_SOCKET, name, &v, &len) == 0);
    return v;
  };
  auto o = local("127.0.0.1");
  auto [plain, p1] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
  REQUIRE(opt(*plain, SO_BROADCAST) == 0);
  REQUIRE(opt(*plain, SO_REUSEPORT) == 0);
  o.allow_broadcast = true;
  o.reuse_port = true;
  auto [bc, p2] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
  REQUIRE(opt(*bc, SO_BROADCAST) == 1);
  REQUIRE(opt(*bc, SO_REUSEPORT) == 1);
  // With allow_broadcast, remote_addr is remembered but the socket stays unconnected.
  loop::DatagramEndpointOptions b;
  b.allow_broadcast = true;
  b.remote_addr = *plain->extra<loop::SocketAddress>("sockname");
  auto [bc2, p3] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, b));
  REQUIRE_FALSE(bc2->extra<loop::SocketAddress>("peername"));
  p1->lp = &lp;
  p1->stop_on_datagram = true;
  bc2->sendto("to the remembered address");
  run_bounded(lp);
  REQUIRE(p1->datagrams.at(0).first == "to the remembered address");
  close_and_drain(lp, *plain);
  close_and_drain(lp, *bc);
  close_and_drain(lp, *bc2);
}

TEST_CASE("DatagramTransport: sendto another address than remote_addr is refused") {
  loop::EventLoop lp;
  auto [srv, sp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, local("127.0.0.1")));
  loop::DatagramEndpointOptions o;
  auto remote = *srv->extra<loop::SocketAddress>("sockname");
  o.remote_addr = remote;
  auto [t, p] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
  auto other = loop::SocketAddress::from_ip("127.0.0.1", remote.port() == 9 ? 10 : 9);
  REQUIRE_THROWS_AS(t->sendto("x", other), std::invalid_argument);
  REQUIRE_NOTHROW(t->sendto("x", remote));  // the same address is fine, as asyncio
  // An unconnected endpoint needs an address.
  REQUIRE_THROWS_AS(srv->sendto("y"), std::invalid_argument);
  close_and_drain(lp, *t);
  close_and_drain(lp, *srv);
}

TEST_CASE("create_datagram_endpoint: sock and its conflicting options") {
  loop::EventLoop lp;
  int tcp = ::socket(AF_INET, SOCK_STREAM, 0);
  loop::DatagramEndpointOptions o;
  o.sock = tcp;
  REQUIRE_THROWS_AS(lp.run_until_complete(lp.create_datagram_endpoint(
                        [] { return std::make_shared<Recorder>(); }, o)),
                    std::invalid_argument);
  ::close(tcp);

  int udp = ::socket(AF_INET, SOCK_DGRAM, 0);
  auto a = loop::SocketAddress::from_ip("127.0.0.1", 0);
  REQUIRE(::bind(udp, a.data(), a.size()) == 0);
  o.sock = udp;
  o.local_addr = a;
  try {
    lp.run_until_complete(
        lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
    FAIL("accepted sock with local_addr");
  } catch (const std::invalid_argument& e) {
    REQUIRE(std::string(e.what()).find("can not be used when sock is specified") !=
            std::string::npos);
  }
  o.local_addr.reset();
  auto [t, p] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
  REQUIRE(*t->extra<int>("socket") == udp);
  REQUIRE((::fcntl(udp, F_GETFL) & O_NONBLOCK) != 0);  // made non-blocking
  close_and_drain(lp, *t);
  REQUIRE(::fcntl(udp, F_GETFD) == -1);  // the transport closed the socket it owned
  // Neither address nor family.
  REQUIRE_THROWS_AS(
      lp.run_until_complete(lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); },
                                                        loop::DatagramEndpointOptions{})),
      std::invalid_argument);
}

TEST_CASE(
    "DatagramTransport: connection_made runs before the endpoint's coroutine resumes, "
    "abort and close call connection_lost once") {
  loop::EventLoop lp;
  std::shared_ptr<Recorder> made;
  auto [t, p] = lp.run_until_complete(lp.create_datagram_endpoint(
      [&] {
        made = std::make_shared<Recorder>();
        return made;
      },
      local("127.0.0.1")));
  REQUIRE(p == made);
  REQUIRE(p->events == std::vector<std::string>{"connection_made"});
  REQUIRE(p->transport == t.get());
  t->abort();
  REQUIRE(t->is_closing());
  REQUIRE_FALSE(p->lost);  // connection_lost comes with call_soon, as in asyncio
  t->close();              // no second connection_lost
  run_once(lp);
  REQUIRE(p->events == std::vector<std::string>{"connection_made", "connection_lost"});
  REQUIRE_FALSE(t->extra<int>("socket"));
  // Sending after the connection is lost sends nothing and does not throw (asyncio counts it).
  REQUIRE_NOTHROW(t->sendto("late", *t->extra<loop::SocketAddress>("sockname")));
}

TEST_CASE("DatagramTransport: many datagrams are all delivered in order, one buffer reused") {
  loop::EventLoop lp;
  auto [srv, sp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, local("127.0.0.1")));
  loop::DatagramEndpointOptions o;
  o.remote_addr = *srv->extra<loop::SocketAddress>("sockname");
  auto [cli, cp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
  // Few enough that the kernel's default receive buffer holds them all (UDP drops, not us).
  const int n = 100;
  for (int i = 0; i < n; ++i) cli->sendto("d" + std::to_string(i));
  std::string big(60000, 'x');  // near the 64 KiB receive buffer
  cli->sendto(big);
  sp->lp = &lp;
  struct Stopper : loop::DatagramProtocol {};
  auto guard = lp.call_later(10, [&] { lp.stop(); });
  std::function<void()> check = [&] {
    if (sp->datagrams.size() == static_cast<std::size_t>(n + 1))
      lp.stop();
    else
      lp.call_later(0.001, check);
  };
  lp.call_soon(check);
  lp.run_forever();
  guard.cancel();
  REQUIRE(sp->datagrams.size() == static_cast<std::size_t>(n + 1));
  for (int i = 0; i < n; ++i) REQUIRE(sp->datagrams[i].first == "d" + std::to_string(i));
  REQUIRE(sp->datagrams[n].first == big);
  close_and_drain(lp, *cli);
  close_and_drain(lp, *srv);
}

TEST_CASE("DatagramTransport: trace records connection_made, datagram_received, connection_lost") {
  char path[] = "/tmp/libloop-dgram-trace-XXXXXX";
  int tfd = ::mkstemp(path);
  REQUIRE(tfd >= 0);
  std::FILE* f = ::fdopen(tfd, "w");
  {
    loop::EventLoop lp;
    lp.set_tracer(loop::make_jsonl_tracer(f, true));
    auto [srv, sp] = lp.run_until_complete(lp.create_datagram_endpoint(
        [] { return std::make_shared<Recorder>(); }, local("127.0.0.1")));
    sp->lp = &lp;
    sp->stop_on_datagram = true;
    loop::DatagramEndpointOptions o;
    o.remote_addr = *srv->extra<loop::SocketAddress>("sockname");
    auto [cli, cp] = lp.run_until_complete(
        lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
    cli->sendto("traced");
    run_bounded(lp);
    close_and_drain(lp, *cli);
    close_and_drain(lp, *srv);
    lp.close();
  }
  std::FILE* in = std::fopen(path, "r");
  char line[4096];
  int received = 0, made = 0, lost = 0;
  while (std::fgets(line, sizeof line, in)) {
    auto j = nlohmann::json::parse(line);
    std::string ev = j["ev"];
    if (ev == "datagram_received") {
      ++received;
      REQUIRE(j["bytes"] == 6);
      REQUIRE(j["transport"].is_number_integer());
      REQUIRE(j["peer"].get<std::string>().rfind("127.0.0.1:", 0) == 0);
    }
    if (ev == "connection_made") ++made;
    if (ev == "connection_lost") {
      ++lost;
      REQUIRE(j["reason"].is_null());
    }
  }
  std::fclose(in);
  ::unlink(path);
  REQUIRE(received == 1);
  REQUIRE(made == 2);
  REQUIRE(lost == 2);
}

TEST_CASE("DatagramTransport: a unix datagram of 100,000 bytes arrives whole") {
  // asyncio reads up to max_size = 256 KiB; AF_UNIX datagrams may be larger than 64 KiB.
  std::string name = "@libloop-dgram-big-" + std::to_string(::getpid());
  loop::EventLoop lp;
  loop::DatagramEndpointOptions so;
  so.local_addr = loop::SocketAddress::from_unix_path(name);
  auto [srv, sp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, so));
  sp->lp = &lp;
  sp->stop_on_datagram = true;
  loop::DatagramEndpointOptions co;
  co.remote_addr = loop::SocketAddress::from_unix_path(name);
  auto [cli, cp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, co));
  std::string big(100000, 'x');
  big.back() = 'y';
  cli->sendto(big);
  run_bounded(lp);
  REQUIRE(sp->datagrams.at(0).first.size() == big.size());
  REQUIRE(sp->datagrams.at(0).first == big);
  close_and_drain(lp, *cli);
  close_and_drain(lp, *srv);
}

TEST_CASE(
    "DatagramTransport: sendto between close() and connection_lost still sends without "
    "remote_addr, is dropped with it") {
  // asyncio drops only when `self._conn_lost and self._address`.
  loop::EventLoop lp;
  auto [srv, sp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, local("127.0.0.1")));
  sp->lp = &lp;
  sp->stop_on_datagram = true;
  auto addr = *srv->extra<loop::SocketAddress>("sockname");
  auto [cli, cp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, local("127.0.0.1")));
  cli->close();
  REQUIRE_FALSE(cp->lost);
  cli->sendto("after-close", addr);
  run_bounded(lp);
  REQUIRE(cp->lost);
  REQUIRE(sp->datagrams.at(0).first == "after-close");
  sp->stop_on_datagram = false;

  loop::DatagramEndpointOptions o;
  o.remote_addr = addr;
  auto [conn, connp] = lp.run_until_complete(
      lp.create_datagram_endpoint([] { return std::make_shared<Recorder>(); }, o));
  conn->close();
  conn->sendto("dropped");
  conn->sendto("dropped too", addr);
  run_once(lp);
  REQUIRE(connp->lost);
  // Let anything sent arrive: a loop iteration with a timer.
  lp.run_until_complete(loop::sleep(0.05));
  REQUIRE(sp->datagrams.size() == 1);
  close_and_drain(lp, *srv);
}

TEST_CASE("create_datagram_endpoint: of several addresses for one (family, proto), the last") {
  // asyncio's `addr_infos[key][idx] = address`: a later address of the same key replaces it.
  using loop::SocketAddress;
  using Info = loop::detail::DatagramAddrInfo;
  std::vector<Info> local{{AF_INET, IPPROTO_UDP, SocketAddress::from_ip("127.0.0.2", 0)},
                          {AF_INET, IPPROTO_UDP, SocketAddress::from_ip("127.0.0.3", 0)}};
  std::vector<Info> remote{{AF_INET, IPPROTO_UDP, SocketAddress::from_ip("127.0.0.4", 9)},
                           {AF_INET6, IPPROTO_UDP, SocketAddress::from_ip("::1", 9)},
                           {AF_INET, IPPROTO_UDP, SocketAddress::from_ip("127.0.0.5", 9)}};
  auto pairs = loop::detail::pair_datagram_addresses(local, std::nullopt);
  REQUIRE(pairs.size() == 1);
  REQUIRE(pairs[0].local->to_string() == "127.0.0.3:0");
  REQUIRE_FALSE(pairs[0].remote);
  pairs = loop::detail::pair_datagram_addresses(std::nullopt, remote);
  REQUIRE(pairs.size() == 2);  // keys in first-seen order
  REQUIRE(pairs[0].family == AF_INET);
  REQUIRE(pairs[0].remote->to_string() == "127.0.0.5:9");
  REQUIRE(pairs[1].family == AF_INET6);
  // Both given: the AF_INET6 key has no local address and is left out.
  pairs = loop::detail::pair_datagram_addresses(local, remote);
  REQUIRE(pairs.size() == 1);
  REQUIRE(pairs[0].local->to_string() == "127.0.0.3:0");
  REQUIRE(pairs[0].remote->to_string() == "127.0.0.5:9");
  REQUIRE_THROWS_AS(loop::detail::pair_datagram_addresses(std::vector<Info>{}, remote),
                    std::invalid_argument);
}

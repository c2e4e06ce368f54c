// TLS on real sockets: ssl= on create_connection / create_server and friends, between our own
// client and server and against `openssl s_server` / `s_client`; certificates made at run time.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <loop/loop.hpp>
#include <loop/sslproto.hpp>
#include <thread>

#include "test_certs.hpp"
#include "transport_helpers.hpp"

using loop::test::TestCerts;
using test::RecordingProtocol;

namespace {

std::shared_ptr<loop::SSLContext> server_ctx(const std::string& cert, const std::string& key) {
  auto ctx = loop::SSLContext::create_default_context(loop::Purpose::client_auth);
  ctx->load_cert_chain(cert, key);
  return ctx;
}
std::shared_ptr<loop::SSLContext> server_ctx() {
  const auto& c = TestCerts::get();
  return server_ctx(c.server_cert, c.server_key);
}
std::shared_ptr<loop::SSLContext> client_ctx(const std::string& cafile) {
  return loop::SSLContext::create_default_context(loop::Purpose::server_auth, cafile);
}
std::shared_ptr<loop::SSLContext> client_ctx() {
  return client_ctx(TestCerts::get().ca_cert);
}

// Echoes what it receives; counts its connections.
struct Echo : loop::Protocol {
  loop::Transport* t = nullptr;
  int* made;
  int* lost;
  Echo(int* m, int* l) : made(m), lost(l) {}
  void connection_made(loop::BaseTransport& tr) override {
    t = dynamic_cast<loop::Transport*>(&tr);
    ++*made;
  }
  void data_received(std::string_view d) override { t->write(d); }
  void connection_lost(std::exception_ptr) override { ++*lost; }
};

struct EchoServer {
  int made = 0, lost = 0;
  std::shared_ptr<loop::Server> server;
  int port = 0;
  loop::Coroutine<void> start(loop::EventLoop& lp, loop::ServerOptions o) {
    std::string host = "127.0.0.1";
    auto make = [this] { return std::make_shared<Echo>(&made, &lost); };
    auto coro = lp.create_server(make, host, 0, o);
    server = co_await std::move(coro);
    port = server->sockets().at(0).port();
  }
};

// Reports from the exception handler (there must be none for a peer's bad handshake).
struct HandlerCalls {
  std::vector<std::string> messages;
  explicit HandlerCalls(loop::EventLoop& lp) {
    lp.set_exception_handler([this](loop::EventLoop&, const loop::ExceptionContext& c) {
      messages.push_back(c.message);
    });
  }
};

loop::Coroutine<loop::ConnectionPair<RecordingProtocol>> tls_connect(loop::EventLoop& lp,
                                                                     std::string host, int port,
                                                                     loop::ConnectionOptions o) {
  auto factory = [] { return std::make_shared<RecordingProtocol>(); };
  auto coro = lp.create_connection(factory, host, port, o);
  co_return co_await std::move(coro);
}

std::string expect_failure(loop::EventLoop& lp,
                           loop::Coroutine<loop::ConnectionPair<RecordingProtocol>> c) {
  try {
    lp.run_until_complete(std::move(c));
  } catch (const std::exception& e) {
    return e.what();
  }
  FAIL("the connection succeeded");
  return {};
}

// Runs argv as a child process (stdin from /dev/null); its stdout+stderr go to `out_path`.
pid_t spawn(std::vector<std::string> args, const std::string& out_path = "/dev/null",
            const std::string& in_path = "/dev/null") {
  pid_t pid = fork();
  if (pid == 0) {
    std::freopen(in_path.c_str(), "r", stdin);
    std::freopen(out_path.c_str(), "w", stdout);
    dup2(1, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}
struct Reap {
  pid_t pid;
  ~Reap() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
};

// s_server cannot report the port it bound: take one the kernel hands out and free it.
int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  auto a = loop::SocketAddress::from_ip("127.0.0.1", 0);
  ::bind(s, a.data(), a.size());
  loop::SocketAddress got;
  socklen_t len = loop::SocketAddress::capacity();
  ::getsockname(s, got.data(), &len);
  got.set_size(len);
  ::close(s);
  return got.port();
}

}  // namespace

TEST_CASE("ssl create_connection to ssl create_server: echo and get_extra_info") {
  loop::EventLoop lp;
  HandlerCalls calls(lp);
  EchoServer srv;
  loop::ServerOptions so;
  so.ssl = server_ctx();
  lp.run_until_complete(srv.start(lp, so));
  loop::ConnectionOptions o;
  o.ssl = client_ctx();  // server_hostname defaults to the host, 127.0.0.1: in the SAN
  auto [t, p] = lp.run_until_complete(tls_connect(lp, "127.0.0.1", srv.port, o));
  // create_connection returns once the handshake is done: connection_made has run.
  REQUIRE(p->events == std::vector<std::string>{"connection_made"});
  REQUIRE(p->transport == t.get());
  REQUIRE(dynamic_cast<loop::SSLProtocolTransport*>(t.get()) != nullptr);

  auto peercert = std::any_cast<nlohmann::json>(t->get_extra_info("peercert"));
  CHECK(peercert["subject"].dump().find("localhost") != std::string::npos);
  auto cipher = std::any_cast<loop::CipherInfo>(t->get_extra_info("cipher"));
  CHECK(cipher.protocol == "TLSv1.3");
  CHECK(cipher.bits >= 128);
  CHECK_FALSE(std::any_cast<std::optional<std::string>>(t->get_extra_info("compression")));
  CHECK(std::any_cast<std::shared_ptr<loop::SSLContext>>(t->get_extra_info("sslcontext")) == o.ssl);
  CHECK(std::any_cast<SSL*>(t->get_extra_info("ssl_object")) != nullptr);
  // The socket's own information comes through the layer.
  auto peer = t->extra<loop::SocketAddress>("peername");
  REQUIRE(peer);
  CHECK(peer->port() == srv.port);
  auto local = t->extra<loop::SocketAddress>("sockname");
  REQUIRE(local);
  CHECK(local->to_string().rfind("127.0.0.1:", 0) == 0);
  auto fd = t->extra<int>("socket");
  REQUIRE(fd);
  CHECK(*fd >= 0);
  CHECK_FALSE(t->get_extra_info("no such thing").has_value());

  t->write("hello over TLS");
  test::run_until(lp, [&] { return p->received.size() >= 14; });
  CHECK(p->received == "hello over TLS");
  CHECK(srv.made == 1);
  t->close();
  test::run_until(lp, [&] { return p->lost && srv.lost == 1; });
  CHECK(p->lost_error == nullptr);
  // Once the socket's transport is gone only the TLS extras remain (asyncio's _get_extra_info
  // with _transport None): the socket's own give the default.
  CHECK(t->extra<nlohmann::json>("peercert"));
  CHECK(t->extra<loop::CipherInfo>("cipher"));
  CHECK_FALSE(t->extra<loop::SocketAddress>("peername"));
  CHECK_FALSE(t->extra<loop::SocketAddress>("sockname"));
  CHECK(std::any_cast<std::string>(t->get_extra_info("peername", std::string("DEFAULT"))) ==
        "DEFAULT");
  srv.server->close();
  lp.run_until_complete(srv.server->wait_closed());
  CHECK(calls.messages.empty());
}

TEST_CASE("ssl option checks: server_hostname and ssl_handshake_timeout (asyncio's ValueErrors)") {
  loop::EventLoop lp;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  auto factory = [] { return std::make_shared<RecordingProtocol>(); };
  auto check = [&](loop::ConnectionOptions o, const std::string& expected) {
    try {
      auto coro = lp.create_connection(factory, o);
      lp.run_until_complete(std::move(coro));
      FAIL("accepted");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()) == expected);
    }
  };
  loop::ConnectionOptions o;
  o.sock = sv[0];
  o.ssl = client_ctx();
  check(o, "You must set server_hostname when using ssl without a host");
  o.ssl = nullptr;
  o.server_hostname = "localhost";
  check(o, "server_hostname is only meaningful with ssl");
  o.server_hostname.reset();
  o.ssl_handshake_timeout = 1.0;
  check(o, "ssl_handshake_timeout is only meaningful with ssl");
  o.ssl = client_ctx();
  o.server_hostname = "localhost";
  o.ssl_handshake_timeout = -1.0;
  CHECK_THROWS_AS(
      [&] {
        auto coro = lp.create_connection(factory, o);
        lp.run_until_complete(std::move(coro));
      }(),
      std::invalid_argument);
  // create_unix_connection has no host to default to.
  loop::ConnectionOptions u;
  u.ssl = client_ctx();
  CHECK_THROWS_WITH(
      [&] {
        auto coro = lp.create_unix_connection(factory, "/nonexistent/sock", u);
        lp.run_until_complete(std::move(coro));
      }(),
      "you have to pass server_hostname when using ssl");
  loop::ServerOptions so;
  so.ssl_handshake_timeout = 1.0;
  CHECK_THROWS_WITH(
      [&] {
        auto coro = lp.create_server(factory, "127.0.0.1", 0, so);
        lp.run_until_complete(std::move(coro));
      }(),
      "ssl_handshake_timeout is only meaningful with ssl");
  ::close(sv[1]);  // sv[0] was taken by the transport of the last attempt
}

TEST_CASE("a wrong hostname and an unknown CA are rejected with a clear error; server serves on") {
  const auto& certs = TestCerts::get();
  loop::EventLoop lp;
  HandlerCalls calls(lp);
  EchoServer srv;
  loop::ServerOptions so;
  so.ssl = server_ctx();
  lp.run_until_complete(srv.start(lp, so));

  loop::ConnectionOptions o;
  o.ssl = client_ctx();
  o.server_hostname = "wrong.example";
  std::string msg = expect_failure(lp, tls_connect(lp, "127.0.0.1", srv.port, o));
  CHECK_THAT(msg,
             Catch::Contains("certificate verify failed") && Catch::Contains("Hostname mismatch"));
  try {
    lp.run_until_complete(tls_connect(lp, "127.0.0.1", srv.port, o));
  } catch (const loop::SSLCertVerificationError& e) {
    CHECK(e.verify_code != 0);
  }

  loop::ConnectionOptions unknown;
  unknown.ssl = client_ctx(certs.unknown_ca_cert);
  msg = expect_failure(lp, tls_connect(lp, "127.0.0.1", srv.port, unknown));
  CHECK_THAT(msg, Catch::Contains("certificate verify failed") &&
                      Catch::Contains("unable to get local issuer certificate"));

  // The server closed those connections and still serves.
  loop::ConnectionOptions good;
  good.ssl = client_ctx();
  good.server_hostname = "localhost";
  auto [t, p] = lp.run_until_complete(tls_connect(lp, "127.0.0.1", srv.port, good));
  t->write("still here");
  test::run_until(lp, [&] { return p->received == "still here"; });
  t->close();
  test::run_until(lp, [&] { return srv.lost == srv.made && p->lost; });
  CHECK(srv.made == 1);  // the failed handshakes never reached the application
  srv.server->close();
  lp.run_until_complete(srv.server->wait_closed());
  CHECK(calls.messages.empty());  // the peers' failures are not the loop's errors
}

TEST_CASE("an explicitly empty server_hostname disables hostname matching") {
  const auto& certs = TestCerts::get();
  loop::EventLoop lp;
  EchoServer srv;
  loop::ServerOptions so;
  so.ssl = server_ctx(certs.other_cert, certs.other_key);  // CN=other.example
  lp.run_until_complete(srv.start(lp, so));
  loop::ConnectionOptions o;
  o.ssl = client_ctx(certs.unknown_ca_cert);  // which signed it
  std::string msg = expect_failure(lp, tls_connect(lp, "127.0.0.1", srv.port, o));
  CHECK_THAT(msg, Catch::Contains("IP address mismatch") || Catch::Contains("Hostname mismatch"));
  o.server_hostname = "";
  auto [t, p] = lp.run_until_complete(tls_connect(lp, "127.0.0.1", srv.port, o));
  auto peercert = std::any_cast<nlohmann::json>(t->get_extra_info("peercert"));
  CHECK(peercert["subject"].dump().find("other.example") != std::string::npos);
  t->close();
  test::run_until(lp, [&] { return p->lost; });
  srv.server->close();
  lp.run_until_complete(srv.server->wait_closed());
}

TEST_CASE("client: a server that never speaks TLS hits the handshake timeout, socket closed") {
  loop::EventLoop lp;
  // A plain server that reads the ClientHello and says nothing.
  int made = 0, lost = 0;
  auto silent = [&] {
    auto p = std::make_shared<RecordingProtocol>();
    p->on_made = [&](loop::Transport&) { ++made; };
    p->on_lost = [&](std::exception_ptr) { ++lost; };
    return p;
  };
  std::string host = "127.0.0.1";
  auto sc = lp.create_server(silent, host, 0);
  auto server = lp.run_until_complete(std::move(sc));
  int port = server->sockets().at(0).port();
  loop::ConnectionOptions o;
  o.ssl = client_ctx();
  o.ssl_handshake_timeout = 0.3;
  double t0 = lp.time();
  std::string msg = expect_failure(lp, tls_connect(lp, "127.0.0.1", port, o));
  double took = lp.time() - t0;
  CHECK_THAT(msg, Catch::StartsWith(
                      "SSL handshake is taking longer than 0.3 seconds: aborting the connection"));
  CHECK(took >= 0.29);
  // Our side closed the socket: the silent server sees its connection end.
  test::run_until(lp, [&] { return lost == 1; });
  CHECK(made == 1);
  server->close();
  lp.run_until_complete(server->wait_closed());
}

TEST_CASE("server: a silent client times out, garbage is closed, the next client is served") {
  loop::EventLoop lp;
  HandlerCalls calls(lp);
  EchoServer srv;
  loop::ServerOptions so;
  so.ssl = server_ctx();
  so.ssl_handshake_timeout = 0.3;
  lp.run_until_complete(srv.start(lp, so));
  auto plain = [&]() {
    auto factory = [] { return std::make_shared<RecordingProtocol>(); };
    std::string host = "127.0.0.1";
    auto c = lp.create_connection(factory, host, srv.port);
    return lp.run_until_complete(std::move(c));
  };
  // Silent: closed by the server after the timeout.
  auto [t1, p1] = plain();
  double t0 = lp.time();
  test::run_until(
      lp, [&] { return p1->lost; }, 10);
  CHECK(lp.time() - t0 >= 0.25);
  CHECK(p1->events.back() == "connection_lost");
  // Garbage: closed at once (possibly after an alert), not echoed.
  auto [t2, p2] = plain();
  t2->write("GET / HTTP/1.0\r\n\r\n");
  t0 = lp.time();
  test::run_until(
      lp, [&] { return p2->lost; }, 10);
  CHECK(lp.time() - t0 < 0.25);
  CHECK(p2->received.find("HTTP") == std::string::npos);
  // The next one is served.
  loop::ConnectionOptions o;
  o.ssl = client_ctx();
  auto [t3, p3] = lp.run_until_complete(tls_connect(lp, "127.0.0.1", srv.port, o));
  t3->write("next");
  test::run_until(lp, [&] { return p3->received == "next"; });
  t3->close();
  test::run_until(lp, [&] { return p3->lost && srv.lost == srv.made; });
  CHECK(srv.made == 1);
  srv.server->close();
  lp.run_until_complete(srv.server->wait_closed());
  CHECK(calls.messages.empty());
}

TEST_CASE("server: in debug mode a failed handshake is reported to the exception handler") {
  loop::EventLoop lp;
  lp.set_debug(true);
  HandlerCalls calls(lp);
  EchoServer srv;
  loop::ServerOptions so;
  so.ssl = server_ctx();
  lp.run_until_complete(srv.start(lp, so));
  auto factory = [] { return std::make_shared<RecordingProtocol>(); };
  std::string host = "127.0.0.1";
  auto c = lp.create_connection(factory, host, srv.port);
  auto [t, p] = lp.run_until_complete(std::move(c));
  t->write("not TLS at all\r\n\r\n");
  test::run_until(
      lp, [&] { return p->lost && !calls.messages.empty(); }, 10);
  CHECK(calls.messages.at(0) == "Error on transport creation for incoming connection");
  srv.server->close();
  lp.run_until_complete(srv.server->wait_closed());
}

// A departure from asyncio (README): the side whose handshake fails sends OpenSSL's alert
// before it closes, so the peer's SSLError names the reason; asyncio drops the alert and its
// peer sees a bare EOF (ConnectionResetError).
TEST_CASE("a failed handshake sends its alert: the peer's SSLError names it") {
  auto reason_of = [](std::exception_ptr e) -> std::string {
    try {
      std::rethrow_exception(e);
    } catch (const loop::SSLError& ssl_error) {
      return ssl_error.reason();
    } catch (const std::exception& other) {
      return std::string("not an SSLError: ") + other.what();
    }
  };

  SECTION("the client refuses the server's certificate: the server hears unknown ca") {
    loop::EventLoop lp;
    lp.set_debug(true);  // the server reports its failed handshakes to the exception handler
    std::exception_ptr server_error;
    lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& c) {
      if (!server_error) server_error = c.exception;
    });
    EchoServer srv;
    loop::ServerOptions so;
    so.ssl = server_ctx();
    lp.run_until_complete(srv.start(lp, so));
    loop::ConnectionOptions o;
    o.ssl = client_ctx(TestCerts::get().unknown_ca_cert);
    o.server_hostname = "localhost";
    CHECK_THAT(expect_failure(lp, tls_connect(lp, "127.0.0.1", srv.port, o)),
               Catch::Contains("certificate verify failed"));
    test::run_until(
        lp, [&] { return server_error != nullptr; }, 10);
    REQUIRE(server_error);
    CHECK(reason_of(server_error) == "tlsv1 alert unknown ca");
    srv.server->close();
    lp.run_until_complete(srv.server->wait_closed());
  }

  SECTION("the server requires a client certificate: the client hears certificate required") {
    // TLS 1.3: the client's handshake is over before the server checks for its certificate;
    // its connection then ends on the server's alert.
    loop::EventLoop lp;
    EchoServer srv;
    loop::ServerOptions so;
    so.ssl = server_ctx();
    so.ssl->set_verify_mode(loop::VerifyMode::cert_required);
    so.ssl->load_verify_locations(TestCerts::get().ca_cert);
    lp.run_until_complete(srv.start(lp, so));
    loop::ConnectionOptions o;
    o.ssl = client_ctx();
    o.server_hostname = "localhost";
    auto [t, p] = lp.run_until_complete(tls_connect(lp, "127.0.0.1", srv.port, o));
    test::run_until(
        lp, [&, p = p] { return p->lost; }, 10);
    REQUIRE(p->lost);
    REQUIRE(p->lost_error);
    CHECK(reason_of(p->lost_error) == "tlsv13 alert certificate required");
    CHECK(srv.made == 0);
    srv.server->close();
    lp.run_until_complete(srv.server->wait_closed());
  }
}

TEST_CASE("ssl on unix sockets and connect_accepted_socket") {
  loop::EventLoop lp;
  EchoServer srv;
  std::string path = TestCerts::get().dir + "/tls.sock";
  int made = 0, lost = 0;
  auto make = [&] { return std::make_shared<Echo>(&made, &lost); };
  loop::ServerOptions so;
  so.ssl = server_ctx();
  auto sc = lp.create_unix_server(make, path, so);
  auto server = lp.run_until_complete(std::move(sc));
  auto factory = [] { return std::make_shared<RecordingProtocol>(); };
  loop::ConnectionOptions o;
  o.ssl = client_ctx();
  o.server_hostname = "localhost";
  auto cc = lp.create_unix_connection(factory, path, o);
  auto [t, p] = lp.run_until_complete(std::move(cc));
  t->write("unix");
  test::run_until(lp, [&] { return p->received == "unix"; });
  t->close();
  test::run_until(lp, [&] { return p->lost && lost == 1; });
  server->close();
  lp.run_until_complete(server->wait_closed());

  // connect_accepted_socket is the server side.
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  loop::ConnectionOptions a;
  a.ssl = server_ctx();
  a.ssl_handshake_timeout = 5;
  auto ac = lp.connect_accepted_socket(make, sv[0], a);
  auto at = lp.create_task(std::move(ac));
  loop::ConnectionOptions b;
  b.ssl = client_ctx();
  b.server_hostname = "localhost";
  b.sock = sv[1];
  auto bc = lp.create_connection(factory, b);
  auto [t2, p2] = lp.run_until_complete(std::move(bc));
  lp.run_until_complete(at);
  t2->write("accepted");
  test::run_until(lp, [&] { return p2->received == "accepted"; });
  t2->close();
  test::run_until(lp, [&] { return p2->lost && lost == 2; });
}

TEST_CASE("our ssl create_connection against openssl s_server -www") {
  const auto& certs = TestCerts::get();
  int port = free_port();
  Reap server{spawn({"openssl", "s_server", "-accept", "127.0.0.1:" + std::to_string(port), "-cert",
                     certs.server_cert, "-key", certs.server_key, "-www"})};
  loop::EventLoop lp;
  loop::ConnectionOptions o;
  o.ssl = client_ctx();
  o.server_hostname = "localhost";
  std::shared_ptr<loop::Transport> t;
  std::shared_ptr<RecordingProtocol> p;
  for (int i = 0; i < 100 && !t; ++i) {  // until s_server listens
    try {
      std::tie(t, p) = lp.run_until_complete(tls_connect(lp, "127.0.0.1", port, o));
    } catch (const std::system_error&) {
      usleep(50000);
    }
  }
  REQUIRE(t);
  t->write("GET / HTTP/1.0\r\n\r\n");
  test::run_until(lp, [&] { return p->lost; });
  CHECK_THAT(p->received, Catch::StartsWith("HTTP/1.0 200 ok"));
  CHECK_THAT(p->received, Catch::Contains("TLSv1.3"));
}

TEST_CASE("openssl s_client against our ssl create_server") {
  const auto& certs = TestCerts::get();
  loop::EventLoop lp;
  int made = 0;
  auto make = [&] {
    auto p = std::make_shared<RecordingProtocol>();
    p->on_made = [&](loop::Transport&) { ++made; };
    p->on_data = [p = p.get()](std::string_view) {  // not a shared_ptr: no self-cycle
      if (p->received.find('\n') == std::string::npos) return;
      std::string up = p->received;
      for (auto& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      p->transport->write(up);
      p->transport->close();  // close_notify: s_client exits on it
    };
    return p;
  };
  loop::ServerOptions so;
  so.ssl = server_ctx();
  std::string host = "127.0.0.1";
  auto sc = lp.create_server(make, host, 0, so);
  auto server = lp.run_until_complete(std::move(sc));
  int port = server->sockets().at(0).port();
  std::string input = certs.write_file("s_client_in.txt", "hello from s_client\n");
  std::string out = certs.dir + "/s_client_out.txt";
  pid_t pid =
      spawn({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port), "-servername",
             "localhost", "-verify_return_error", "-CAfile", certs.ca_cert, "-quiet"},
            out, input);
  int status = -1;
  test::run_until(lp, [&] { return waitpid(pid, &status, WNOHANG) == pid; });
  std::string output = TestCerts::read_file(out);
  CHECK_THAT(output, Catch::Contains("HELLO FROM S_CLIENT"));
  CHECK_THAT(output, Catch::Contains("verify return:1"));
  CHECK(made == 1);
  server->close();
  lp.run_until_complete(server->wait_closed());
}

TEST_CASE("TLS 1.1 is refused by default, both ways") {
  const auto& certs = TestCerts::get();
  // openssl s_server offering only TLS 1.1 (SECLEVEL=0 lets OpenSSL 3 speak it at all).
  int port = free_port();
  Reap s_server{spawn({"openssl", "s_server", "-accept", "127.0.0.1:" + std::to_string(port),
                       "-cert", certs.server_cert, "-key", certs.server_key, "-www", "-tls1_1",
                       "-cipher", "DEFAULT@SECLEVEL=0"})};
  loop::EventLoop lp;
  HandlerCalls calls(lp);
  loop::ConnectionOptions o;
  o.ssl = client_ctx();
  o.server_hostname = "localhost";
  std::string msg;
  for (int i = 0; i < 100 && msg.empty(); ++i) {
    try {
      lp.run_until_complete(tls_connect(lp, "127.0.0.1", port, o));
      FAIL("a TLS 1.1 handshake succeeded");
    } catch (const loop::SSLError& e) {
      msg = e.what();
    } catch (const std::system_error&) {
      usleep(50000);  // not listening yet
    }
  }
  CHECK_THAT(msg, Catch::Contains("version") || Catch::Contains("protocol"));

  // openssl s_client speaking only TLS 1.1 to our server: no connection reaches the app.
  int made = 0, lost = 0;
  auto make = [&] { return std::make_shared<Echo>(&made, &lost); };
  loop::ServerOptions so;
  so.ssl = server_ctx();
  std::string host = "127.0.0.1";
  auto sc = lp.create_server(make, host, 0, so);
  auto server = lp.run_until_complete(std::move(sc));
  int sport = server->sockets().at(0).port();
  std::string input = certs.write_file("s_client11_in.txt", "ping\n");
  std::string out = certs.dir + "/s_client11_out.txt";
  pid_t pid = spawn({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(sport),
                     "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-quiet"},
                    out, input);
  int status = -1;
  test::run_until(lp, [&] { return waitpid(pid, &status, WNOHANG) == pid; });
  CHECK(made == 0);
  CHECK(TestCerts::read_file(out).find("ping") == std::string::npos);
  CHECK(calls.messages.empty());
  server->close();
  lp.run_until_complete(server->wait_closed());
}

TEST_CASE("100 MiB through TLS with streams, checked by hash") {
  constexpr std::size_t kTotal = 100u << 20;
  loop::EventLoop lp;
  std::string server_hash;
  auto handler = [&](std::shared_ptr<loop::StreamReader> r,
                     std::shared_ptr<loop::StreamWriter> w) -> loop::Coroutine<void> {
    test::Sha256 h;
    std::size_t got = 0;
    while (got < kTotal) {
      std::string chunk = co_await r->read(1 << 20);
      if (chunk.empty()) break;
      h.update(chunk);
      got += chunk.size();
    }
    server_hash = h.hex();
    w->write(server_hash + "\n");
    co_await w->drain();
    w->close();
  };
  auto main = [&]() -> loop::Coroutine<std::string> {
    loop::ServerOptions so;
    so.ssl = server_ctx();
    std::string host = "127.0.0.1";
    auto sc = loop::start_server(handler, host, 0, so);
    auto server = co_await std::move(sc);
    int port = server->sockets().at(0).port();
    loop::ConnectionOptions o;
    o.ssl = client_ctx();
    auto oc = loop::open_connection(host, port, o);
    auto [r, w] = co_await std::move(oc);
    test::Sha256 h;
    std::string block = test::pattern(1 << 20);
    for (std::size_t sent = 0; sent < kTotal; sent += block.size()) {
      block[0] = static_cast<char>(sent >> 20);  // every MiB differs
      h.update(block);
      w->write(block);
      co_await w->drain();
    }
    std::string line = co_await r->readline();
    w->close();
    server->close();
    co_await server->wait_closed();
    co_return line + h.hex();
  };
  std::string both = lp.run_until_complete(main());
  REQUIRE(both.size() == 64 + 1 + 64);
  CHECK(both.substr(0, 64) == both.substr(65));
  CHECK(server_hash == both.substr(65));
}

TEST_CASE("sendfile over TLS uses the fallback; fallback=false throws SendfileNotAvailableError") {
  const auto& certs = TestCerts::get();
  std::string data = test::pattern(3 * 1024 * 1024 + 17);
  std::string path = certs.write_file("sendfile.bin", data);
  loop::EventLoop lp;
  std::string received;
  bool lost = false;
  auto make = [&] {
    auto p = std::make_shared<RecordingProtocol>();
    p->on_data = [&](std::string_view d) { received.append(d); };
    p->on_lost = [&](std::exception_ptr) { lost = true; };
    return p;
  };
  loop::ServerOptions so;
  so.ssl = server_ctx();
  std::string host = "127.0.0.1";
  auto sc = lp.create_server(make, host, 0, so);
  auto server = lp.run_until_complete(std::move(sc));
  loop::ConnectionOptions o;
  o.ssl = client_ctx();
  auto [t, p] =
      lp.run_until_complete(tls_connect(lp, "127.0.0.1", server->sockets().at(0).port(), o));
  int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  CHECK_THROWS_AS(lp.run_until_complete(lp.sendfile(*t, fd, 0, std::nullopt, false)),
                  loop::SendfileNotAvailableError);
  // A zero count is refused as by sock_sendfile (it returned 0 here, and asyncio's fallback
  // would have sent the whole file).
  CHECK_THROWS_AS(lp.run_until_complete(lp.sendfile(*t, fd, 0, std::size_t{0})),
                  std::invalid_argument);
  std::size_t sent = lp.run_until_complete(lp.sendfile(*t, fd, 5));
  CHECK(sent == data.size() - 5);
  CHECK(::lseek(fd, 0, SEEK_CUR) == static_cast<off_t>(data.size()));
  ::close(fd);
  // The transport is usable after it, with its own protocol back.
  CHECK(t->get_protocol() == p);
  t->write("END");
  test::run_until(lp, [&] { return received.size() >= data.size() - 5 + 3; });
  CHECK(received == data.substr(5) + "END");
  t->close();
  test::run_until(lp, [&] { return lost && p->lost; });
  server->close();
  lp.run_until_complete(server->wait_closed());
}

// loopctl's `sendfile serve --cert`: a task per connection sends the file over TLS (the
// fallback) and the protocol cancels it when the connection is lost. The SSL layer lets go of
// its transport at connection_lost, so the fallback must keep the transport alive itself until
// it has put the protocol back (it crashed on a freed transport here before).
TEST_CASE(
    "sendfile over TLS to a client that resets mid-transfer: the task ends, the server lives") {
  const auto& certs = TestCerts::get();
  std::string data = test::pattern(4 * 1024 * 1024);
  std::string path = certs.write_file("sendfile-reset.bin", data);
  loop::EventLoop lp;
  int ended = 0, made = 0;
  struct Sender : loop::Protocol {
    loop::EventLoop& lp;
    std::string path;
    int& made;
    int& ended;
    std::optional<loop::Task<void>> task;
    Sender(loop::EventLoop& l, std::string p, int& m, int& e)
        : lp(l), path(std::move(p)), made(m), ended(e) {}
    void connection_made(loop::BaseTransport& tr) override {
      ++made;
      auto* t = dynamic_cast<loop::Transport*>(&tr);
      task = lp.create_task(send(lp, t, path, ended));
    }
    // Not a member: the protocol may be gone when the cancelled task resumes.
    static loop::Coroutine<void> send(loop::EventLoop& lp, loop::Transport* t, std::string path,
                                      int& ended) {
      int fd = ::open(path.c_str(), O_RDONLY);
      try {
        co_await lp.sendfile(*t, fd);
      } catch (...) {
      }
      ::close(fd);
      ++ended;
    }
    void connection_lost(std::exception_ptr) override {
      if (task) task->cancel();
    }
  };
  loop::ServerOptions so;
  so.ssl = server_ctx();
  std::string host = "127.0.0.1";
  auto make = [&] { return std::make_shared<Sender>(lp, path, made, ended); };
  auto server = lp.run_until_complete(lp.create_server(make, host, 0, so));
  int port = server->sockets().at(0).port();
  for (int round = 0; round < 6; ++round) {
    INFO("round " << round << ", tasks ended " << ended);
    loop::ConnectionOptions o;
    o.ssl = client_ctx();
    auto [t, p] = lp.run_until_complete(tls_connect(lp, host, port, o));
    test::run_until(lp, [&p = p] { return p->received.size() >= 64 * 1024; });
    if (round % 2) {
      t->abort();  // a reset; the other rounds close cleanly with most of the file unread
    } else {
      t->close();
    }
    test::run_until(lp, [&, r = round] { return ended == r + 1; });
  }
  CHECK(made == 6);
  // A client that stays to the end still gets the whole file.
  loop::ConnectionOptions o;
  o.ssl = client_ctx();
  auto [t, p] = lp.run_until_complete(tls_connect(lp, host, port, o));
  test::run_until(lp, [&p = p] { return p->received.size() >= 4 * 1024 * 1024; });
  CHECK(p->received == data);
  t->close();
  test::run_until(lp, [&] { return ended == 7; });
  server->close();
  lp.run_until_complete(server->wait_closed());
}

// The StreamWriter of a TLS connection shares ownership of its transport: the SSL layer lets
// go of its own reference once connection_lost has run, and a handler that then asks
// is_closing() or closes its writer (the usual read, close, wait_closed) must still reach it.
TEST_CASE("a TLS stream handler may use its writer after the connection is lost") {
  loop::EventLoop lp;
  std::vector<std::string> log;
  auto main = [&]() -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    loop::ServerOptions so;
    so.ssl = server_ctx();
    auto srv = co_await loop::start_server(
        [&](std::shared_ptr<loop::StreamReader> r,
            std::shared_ptr<loop::StreamWriter> w) -> loop::Coroutine<void> {
          log.push_back("read " + co_await r->read());
          co_await loop::sleep(0.1);  // connection_lost has run by now
          log.push_back(w->is_closing() ? "closing" : "open");
          w->close();
          co_await w->wait_closed();
          log.push_back("closed");
          done.set_result();
        },
        "127.0.0.1", 0, so);
    loop::ConnectionOptions co;
    co.ssl = client_ctx();
    co.server_hostname = "localhost";
    auto [r, w] = co_await loop::open_connection("127.0.0.1", srv->sockets().at(0).port(), co);
    w->write("hello");
    co_await w->drain();
    w->close();
    co_await w->wait_closed();
    co_await done;
    srv->close();
    co_await srv->wait_closed();
  };
  lp.run_until_complete(main());
  CHECK(log == std::vector<std::string>{"read hello", "closing", "closed"});
}

TEST_CASE(
    "server: set_protocol inside data_received over TLS, the old one lives until it returns") {
  struct Old : loop::Protocol {
    std::vector<std::string>* log;
    std::shared_ptr<RecordingProtocol> next;
    loop::Transport* t = nullptr;
    explicit Old(std::vector<std::string>* l) : log(l) {}
    ~Old() override { log->push_back("old destroyed"); }
    void connection_made(loop::BaseTransport& tr) override {
      t = dynamic_cast<loop::Transport*>(&tr);
    }
    void data_received(std::string_view d) override {
      log->push_back("old data " + std::string(d));
      t->set_protocol(std::move(next));
      log->push_back("old still running, next " + std::string(next ? "kept" : "given"));
    }
  };
  loop::EventLoop lp;
  std::vector<std::string> log;
  auto next = std::make_shared<RecordingProtocol>();
  loop::ServerOptions so;
  so.ssl = server_ctx();
  std::string host = "127.0.0.1";
  auto srv = lp.run_until_complete(lp.create_server(
      [&] {
        auto old = std::make_shared<Old>(&log);
        old->next = next;
        return old;
      },
      host, 0, so));
  loop::ConnectionOptions co;
  co.ssl = client_ctx();
  auto [t, p] = lp.run_until_complete(tls_connect(lp, host, srv->sockets().at(0).port(), co));
  t->write("one");
  test::run_until(lp, [&] { return log.size() >= 3; });
  t->write("two");
  test::run_until(lp, [&] { return next->received == "two"; });
  CHECK(log ==
        std::vector<std::string>{"old data one", "old still running, next given", "old destroyed"});
  t->close();
  test::run_until(lp, [&] { return next->lost; });
  srv->close();
  lp.run_until_complete(srv->wait_closed());
}

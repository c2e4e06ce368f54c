// A TLS client that never speaks: the server side's handshake timeout aborts the connection
// and frees everything that belonged to it (the SSLProtocol, the application protocol that was
// never connected, the timer). Over the in-memory transport pair (tests/support).
#include <catch2/catch.hpp>
#include <functional>
#include <loop/loop.hpp>
#include <loop/sslproto.hpp>
#include <memory>
#include <vector>

#include "fake_transport.hpp"
#include "test_certs.hpp"

using loop::test::FakeTransport;

namespace {

int apps_connected = 0;

struct App : loop::Protocol {
  void connection_made(loop::BaseTransport&) override { ++apps_connected; }
};

struct Silent : loop::Protocol {
  std::string received;
  bool lost = false;
  std::exception_ptr exc;
  void data_received(std::string_view d) override { received += d; }
  void connection_lost(std::exception_ptr e) override {
    lost = true;
    exc = e;
  }
};

std::shared_ptr<loop::SSLContext> server_ctx() {
  const auto& c = loop::test::TestCerts::get();
  auto ctx = loop::SSLContext::create_default_context(loop::Purpose::client_auth);
  ctx->load_cert_chain(c.server_cert, c.server_key);
  return ctx;
}

bool run_until(loop::EventLoop& lp, const std::function<bool()>& pred, double timeout = 20) {
  double deadline = lp.time() + timeout;
  std::function<void()> check = [&] {
    if (pred() || lp.time() > deadline)
      lp.stop();
    else
      lp.call_later(0.005, check);
  };
  lp.call_soon(check);
  lp.run_forever();
  return pred();
}

}  // namespace

TEST_CASE("silent TLS clients: the server's handshake timeout frees each connection") {
  loop::EventLoop lp;
  int handler_calls = 0;
  lp.set_exception_handler(
      [&](loop::EventLoop&, const loop::ExceptionContext&) { ++handler_calls; });
  auto ctx = server_ctx();
  constexpr int kClients = 50;
  struct Conn {
    std::shared_ptr<FakeTransport> ct, st;
    std::shared_ptr<Silent> client;
    loop::Future<void> waiter;
    std::weak_ptr<loop::SSLProtocol> ssl;
    std::weak_ptr<App> app;
  };
  std::vector<Conn> conns;
  for (int i = 0; i < kClients; ++i) {
    Conn c;
    std::tie(c.ct, c.st) = FakeTransport::make_pair(lp);
    c.client = std::make_shared<Silent>();
    c.waiter = lp.create_future<void>();
    auto app = std::make_shared<App>();
    loop::SSLProtocolOptions opts;
    opts.server_side = true;
    opts.ssl_handshake_timeout = 0.3;
    auto ssl = loop::SSLProtocol::make(lp, app, ctx, c.waiter, opts);
    c.ssl = ssl;
    c.app = app;
    c.st->start(ssl);  // the only strong references left: the transport's
    c.ct->start(c.client);
    conns.push_back(std::move(c));
  }
  double t0 = lp.time();
  REQUIRE(run_until(lp, [&] {
    for (auto& c : conns)
      if (!c.waiter.done() || !c.st->lost() || !c.client->lost) return false;
    return true;
  }));
  CHECK(lp.time() - t0 >= 0.29);
  for (auto& c : conns) {
    CHECK_THROWS_WITH(c.waiter.result(),
                      Catch::Contains("SSL handshake is taking longer than 0.3"));
    CHECK(c.st->aborts == 1);
    CHECK(c.client->received.empty());  // a server says nothing before the ClientHello
    CHECK(c.client->exc != nullptr);    // the client sees a reset
  }
  CHECK(apps_connected == 0);
  // Dropping the transports below frees the rest: no cycle keeps a connection alive.
  for (auto& c : conns) c.st.reset(), c.ct.reset();
  for (auto& c : conns) {
    CHECK(c.ssl.expired());
    CHECK(c.app.expired());
  }
  CHECK(handler_calls == 0);  // a timeout is the peer's doing: not logged (asyncio: debug only)
  lp.close();
}

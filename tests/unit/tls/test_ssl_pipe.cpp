// loop::SSLPipe on its own: two engines exchanging records directly, no loop, no transport.
#include <catch2/catch.hpp>
#include <loop/sslproto.hpp>

#include "test_certs.hpp"

using loop::SSLPipe;
using State = loop::SSLPipe::State;
using loop::test::TestCerts;

namespace {

std::shared_ptr<loop::SSLContext> server_ctx() {
  auto ctx = loop::SSLContext::create_default_context(loop::Purpose::client_auth);
  ctx->load_cert_chain(TestCerts::get().server_cert, TestCerts::get().server_key);
  return ctx;
}

std::shared_ptr<loop::SSLContext> client_ctx() {
  return loop::SSLContext::create_default_context(loop::Purpose::server_auth,
                                                  TestCerts::get().ca_cert);
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (auto& x : v) s += x;
  return s;
}

// Moves records between the two pipes until neither has anything to say; returns the
// application data each side received.
std::pair<std::string, std::string> pump(SSLPipe& client, SSLPipe& server, std::string to_server,
                                         std::string to_client = {}) {
  std::string client_app, server_app;
  for (int i = 0; i < 20 && (!to_server.empty() || !to_client.empty()); ++i) {
    auto s = server.feed_ssldata(std::exchange(to_server, {}));
    to_client += join(s.ssldata);
    server_app += join(s.appdata);
    auto c = client.feed_ssldata(std::exchange(to_client, {}));
    to_server += join(c.ssldata);
    client_app += join(c.appdata);
  }
  return {client_app, server_app};
}

}  // namespace

TEST_CASE("handshake, data both ways, close_notify: the state machine of asyncio's _SSLPipe") {
  SSLPipe client(client_ctx(), false, "localhost");
  SSLPipe server(server_ctx(), true);
  CHECK(client.state() == State::unwrapped);
  std::exception_ptr client_hs = std::make_exception_ptr(1), server_hs = client_hs;
  auto hello = client.do_handshake([&](std::exception_ptr e) { client_hs = e; });
  server.do_handshake([&](std::exception_ptr e) { server_hs = e; });
  CHECK(client.state() == State::do_handshake);
  CHECK(client.need_ssldata());
  CHECK_THROWS_AS(client.do_handshake(), std::runtime_error);
  pump(client, server, join(hello));
  CHECK(client.state() == State::wrapped);
  CHECK(server.state() == State::wrapped);
  CHECK(client_hs == nullptr);
  CHECK(server_hs == nullptr);

  auto [records, offset] = client.feed_appdata("ping", 0);
  CHECK(offset == 4);
  CHECK(join(records).find("ping") == std::string::npos);  // encrypted
  auto [capp, sapp] = pump(client, server, join(records));
  CHECK(sapp == "ping");
  auto [records2, offset2] = server.feed_appdata("xxpong", 2);
  CHECK(offset2 == 6);
  auto got = client.feed_ssldata(join(records2));
  CHECK(join(got.appdata) == "pong");

  // close_notify: the client starts, the server sees an empty chunk, answers, both unwrap.
  bool client_done = false;
  auto notify = client.shutdown([&] { client_done = true; });
  CHECK(client.state() == State::shutdown);
  CHECK_THROWS_AS(client.shutdown(), std::runtime_error);
  auto s = server.feed_ssldata(join(notify));
  REQUIRE(s.appdata.size() == 1);
  CHECK(s.appdata[0].empty());
  bool server_done = false;
  auto reply = server.shutdown([&] { server_done = true; });
  CHECK(server_done);
  CHECK(server.state() == State::unwrapped);
  // The answer completes the client's shutdown; it reads as close_notify there too.
  auto c = client.feed_ssldata(join(reply));
  CHECK(c.appdata == std::vector<std::string>{""});
  CHECK(client_done);
  CHECK(client.state() == State::unwrapped);
  // Unwrapped again: plaintext passes through, both ways.
  CHECK(join(client.feed_ssldata("plain").appdata) == "plain");
  CHECK(join(client.feed_appdata("plain", 1).first) == "lain");
}

TEST_CASE("a write larger than a TLS record (16 KiB) is split into records and arrives whole") {
  SSLPipe client(client_ctx(), false, "localhost");
  SSLPipe server(server_ctx(), true);
  server.do_handshake();
  pump(client, server, join(client.do_handshake()));
  REQUIRE(client.wrapped());
  std::string big(1 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + i / 251);
  auto [records, offset] = client.feed_appdata(big);
  CHECK(offset == big.size());
  auto out = server.feed_ssldata(join(records));
  CHECK(out.appdata.size() >= 4);  // max_size (256 KiB) per chunk
  CHECK(join(out.appdata) == big);
}

TEST_CASE("the handshake callback gets the verification error, which is also thrown") {
  SSLPipe client(client_ctx(), false, "not-localhost.example");
  SSLPipe server(server_ctx(), true);
  server.do_handshake();
  std::exception_ptr hs;
  auto hello = client.do_handshake([&](std::exception_ptr e) { hs = e; });
  auto s = server.feed_ssldata(join(hello));
  try {
    client.feed_ssldata(join(s.ssldata));
    FAIL("no error");
  } catch (const loop::SSLCertVerificationError& e) {
    CHECK_THAT(e.what(), Catch::Contains("Hostname mismatch"));
    CHECK_THAT(e.verify_message, Catch::Contains("not-localhost.example"));
  }
  CHECK(hs != nullptr);
  // The alert for the server is still there to send.
  CHECK_FALSE(client.take_outgoing().empty());
}

TEST_CASE("a client context that checks hostnames needs server_hostname") {
  CHECK_THROWS_AS(SSLPipe(client_ctx(), false), std::invalid_argument);
  SSLPipe ok(client_ctx(), false, "");  // explicitly empty: no hostname check
}

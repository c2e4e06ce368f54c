// loop::SSLProtocol between a client and a server over an in-memory transport pair, on a real
// loop: handshake, data, flow control, close_notify, EOF, abort, timeouts, bad peers.
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <catch2/catch.hpp>
#include <functional>
#include <loop/loop.hpp>
#include <loop/sslproto.hpp>
#include <string>
#include <vector>

#include "fake_transport.hpp"
#include "test_certs.hpp"

using loop::SSLContext;
using loop::SSLProtocol;
using loop::test::FakeTransport;
using loop::test::TestCerts;

namespace {

// Records what an application protocol is told.
struct App : loop::Protocol {
  loop::Transport* transport = nullptr;
  std::string received;
  bool made = false, lost = false;
  int eofs = 0, pauses = 0, resumes = 0;
  std::exception_ptr lost_exc;
  std::function<void(App&)> on_made, on_data, on_resume, on_eof;
  std::vector<std::string> events;  // the callbacks' order, data_received aside
  void connection_made(loop::BaseTransport& t) override {
    events.push_back("made");
    made = true;
    transport = dynamic_cast<loop::Transport*>(&t);
    if (on_made) on_made(*this);
  }
  void data_received(std::string_view d) override {
    received += d;
    if (on_data) on_data(*this);
  }
  bool keep_open_on_eof = false;  // eof_received's answer
  bool eof_received() override {
    events.push_back("eof");
    ++eofs;
    if (on_eof) on_eof(*this);
    return keep_open_on_eof;
  }
  void connection_lost(std::exception_ptr e) override {
    events.push_back("lost");
    lost = true;
    lost_exc = e;
  }
  void pause_writing() override { ++pauses; }
  void resume_writing() override {
    ++resumes;
    if (on_resume) on_resume(*this);
  }
};

struct Records : loop::Tracer {
  std::vector<nlohmann::json> recs;
  void record(const nlohmann::json& r) override { recs.push_back(r); }
  std::vector<nlohmann::json> of(const std::string& ev) const {
    std::vector<nlohmann::json> out;
    for (auto& r : recs)
      if (r["ev"] == ev) out.push_back(r);
    return out;
  }
};

std::shared_ptr<SSLContext> server_ctx(const std::string& cert = TestCerts::get().server_cert,
                                       const std::string& key = TestCerts::get().server_key) {
  auto ctx = SSLContext::create_default_context(loop::Purpose::client_auth);
  ctx->load_cert_chain(cert, key);
  return ctx;
}

std::shared_ptr<SSLContext> client_ctx(const std::string& ca = TestCerts::get().ca_cert) {
  return SSLContext::create_default_context(loop::Purpose::server_auth, ca);
}

// Runs the loop until pred() holds or `timeout` seconds pass; returns pred().
bool run_until(loop::EventLoop& lp, const std::function<bool()>& pred, double timeout = 20) {
  double deadline = lp.time() + timeout;
  std::function<void()> check = [&] {
    if (pred() || lp.time() > deadline)
      lp.stop();
    else
      lp.call_later(0.001, check);
  };
  lp.call_soon(check);
  lp.run_forever();
  return pred();
}

std::string message_of(const loop::Future<void>& f) {
  try {
    f.result();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// A client and a server SSLProtocol on a fake transport pair.
struct Pair {
  loop::EventLoop& lp;
  std::shared_ptr<FakeTransport> ct, st;  // the transports below: client's, server's
  std::shared_ptr<App> capp = std::make_shared<App>(), sapp = std::make_shared<App>();
  loop::Future<void> cw, sw;
  std::shared_ptr<SSLProtocol> cssl, sssl;

  Pair(loop::EventLoop& lp, std::shared_ptr<SSLContext> cctx, std::shared_ptr<SSLContext> sctx,
       std::optional<std::string> hostname = "localhost", loop::SSLProtocolOptions copts = {})
      : lp(lp), cw(lp.create_future<void>()), sw(lp.create_future<void>()) {
    std::tie(ct, st) = FakeTransport::make_pair(lp);
    copts.server_hostname = std::move(hostname);
    cssl = SSLProtocol::make(lp, capp, std::move(cctx), cw, copts);
    loop::SSLProtocolOptions sopts;
    sopts.server_side = true;
    sssl = SSLProtocol::make(lp, sapp, std::move(sctx), sw, sopts);
  }
  void start() {
    ct->start(cssl);
    st->start(sssl);
  }
  bool handshake() {
    start();
    return run_until(lp, [&] { return cw.done() && sw.done(); });
  }
};

std::string sha256(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

}  // namespace

TEST_CASE("handshake: both sides connected, extra info, trace records") {
  loop::EventLoop lp;
  auto tracer = std::make_shared<Records>();
  lp.set_tracer(tracer);
  Pair p(lp, client_ctx(), server_ctx());
  REQUIRE(p.handshake());
  REQUIRE(message_of(p.cw) == "");
  REQUIRE(message_of(p.sw) == "");
  CHECK(p.capp->made);
  CHECK(p.sapp->made);
  CHECK(p.capp->transport == p.cssl->app_transport().get());

  auto& t = *p.cssl->app_transport();
  auto cert = t.extra<nlohmann::json>("peercert");
  REQUIRE(cert);
  CHECK((*cert)["subject"].dump().find("\"commonName\",\"localhost\"") != std::string::npos);
  CHECK((*cert)["issuer"].dump().find("libloop test CA") != std::string::npos);
  CHECK((*cert)["subjectAltName"].dump().find("[\"IP Address\",\"127.0.0.1\"]") !=
        std::string::npos);
  CHECK((*cert)["subjectAltName"].dump().find("[\"IP Address\",\"0:0:0:0:0:0:0:1\"]") !=
        std::string::npos);
  CHECK((*cert)["notAfter"].get<std::string>().find("GMT") != std::string::npos);
  auto cipher = t.extra<loop::CipherInfo>("cipher");
  REQUIRE(cipher);
  CHECK(cipher->protocol == "TLSv1.3");
  CHECK(cipher->bits >= 128);
  CHECK(t.extra<std::string>("version") == std::string("TLSv1.3"));
  CHECK(t.extra<SSL*>("ssl_object").value_or(nullptr) != nullptr);
  auto compression = t.get_extra_info("compression");
  REQUIRE(std::any_cast<std::optional<std::string>>(&compression));
  CHECK_FALSE(std::any_cast<std::optional<std::string>>(compression).has_value());  // TLS 1.3
  CHECK(t.extra<std::shared_ptr<SSLContext>>("sslcontext").value() == p.cssl->context());
  // What the transport below knows passes through.
  CHECK(t.extra<std::string>("peername") == std::string("fake-peer-of-a"));
  // The server asked for no client certificate, so none was sent: Python's getpeercert() is
  // None then, and get_extra_info gives it whatever the default.
  auto none = p.sssl->app_transport()->get_extra_info("peercert", std::string("DEFAULT"));
  REQUIRE(std::any_cast<nlohmann::json>(&none));
  CHECK(std::any_cast<nlohmann::json>(none).is_null());

  auto starts = tracer->of("tls_handshake_start");
  auto ends = tracer->of("tls_handshake_end");
  CHECK(starts.size() == 2);
  REQUIRE(ends.size() == 2);
  CHECK(ends[0]["ok"] == true);
  CHECK(ends[0]["reason"].is_null());
  p.ct->close();
  p.st->close();
  run_until(lp, [&] { return p.capp->lost && p.sapp->lost; });
}

TEST_CASE("a certificate sent but not verified is an empty peercert, not none") {
  loop::EventLoop lp;
  auto cctx = client_ctx();
  cctx->set_check_hostname(false);
  cctx->set_verify_mode(loop::VerifyMode::cert_none);
  Pair p(lp, cctx, server_ctx());
  REQUIRE(p.handshake());
  auto cert = p.cssl->app_transport()->extra<nlohmann::json>("peercert");
  REQUIRE(cert);
  CHECK(cert->is_object());
  CHECK(cert->empty());
  p.ct->close();
  p.st->close();
  run_until(lp, [&] { return p.capp->lost && p.sapp->lost; });
}

TEST_CASE("data both ways, encrypted on the wire") {
  loop::EventLoop lp;
  Pair p(lp, client_ctx(), server_ctx());
  p.ct->record_wire = true;
  p.sapp->on_data = [](App& a) {
    if (a.received == "secret-ping") a.transport->write("secret-pong");
  };
  p.capp->on_made = [](App& a) { a.transport->write("secret-ping"); };
  p.start();
  REQUIRE(run_until(lp, [&] { return p.capp->received == "secret-pong"; }));
  CHECK(p.sapp->received == "secret-ping");
  CHECK(p.ct->wire.find("secret") == std::string::npos);
  p.capp->transport->close();
  REQUIRE(run_until(lp, [&] { return p.capp->lost && p.sapp->lost; }));
}

TEST_CASE("writes made before the handshake completes are queued and arrive in order") {
  loop::EventLoop lp;
  Pair p(lp, client_ctx(), server_ctx());
  p.ct->record_wire = true;
  auto t = p.cssl->app_transport();
  t->write("one,");
  t->write("two,");
  t->writelines({"three,", "four"});
  CHECK(t->get_write_buffer_size() == 18);  // pending data counts
  p.start();
  REQUIRE(run_until(lp, [&] { return p.sapp->received.size() >= 18; }));
  CHECK(p.sapp->received == "one,two,three,four");
  CHECK(p.ct->wire.find("one,") == std::string::npos);  // never in clear
  CHECK(t->get_write_buffer_size() == 0);
}

TEST_CASE("10 MiB through TLS with flow control, checked by hash") {
  loop::EventLoop lp;
  Pair p(lp, client_ctx(), server_ctx());
  const std::size_t total = 10 << 20, piece = 100 * 1000;  // pieces span several records
  std::string data(total, '\0');
  std::uint32_t x = 12345;
  for (auto& c : data) c = static_cast<char>((x = x * 1103515245 + 12345) >> 24);
  std::size_t sent = 0;
  bool paused = false;
  // Writes until the transport says pause (as a well-behaved asyncio protocol does).
  std::function<void(App&)> pump = [&](App& a) {
    paused = false;
    while (sent < total && !paused) {
      std::size_t n = std::min(piece, total - sent);
      a.transport->write(std::string_view(data).substr(sent, n));
      sent += n;
      if (a.pauses > a.resumes) paused = true;
    }
    if (sent == total) a.transport->close();
  };
  p.capp->on_made = pump;
  p.capp->on_resume = pump;
  p.start();
  REQUIRE(run_until(
      lp, [&] { return p.sapp->lost; }, 120));
  CHECK(p.sapp->received.size() == total);
  CHECK(sha256(p.sapp->received) == sha256(data));
  CHECK(p.sapp->lost_exc == nullptr);
  // The application's pause/resume_writing followed the transport below.
  CHECK(p.capp->pauses >= 1);
  CHECK(p.capp->pauses == p.ct->pause_count);
  REQUIRE(run_until(lp, [&] { return p.capp->lost; }));
  CHECK(p.capp->resumes == p.capp->pauses);
}

TEST_CASE("close() sends close_notify: both sides close cleanly, without EOF or abort") {
  loop::EventLoop lp;
  Pair p(lp, client_ctx(), server_ctx());
  REQUIRE(p.handshake());
  p.capp->transport->write("last words");
  p.capp->transport->close();
  CHECK(p.capp->transport->is_closing());
  p.capp->transport->write("dropped");  // nothing may follow close_notify
  REQUIRE(run_until(lp, [&] { return p.capp->lost && p.sapp->lost; }));
  CHECK(p.sapp->received == "last words");
  CHECK(p.sapp->lost_exc == nullptr);
  CHECK(p.capp->lost_exc == nullptr);
  // The close_notify reaches eof_received (asyncio 3.11 calls it; 3.7 did not), whose false
  // lets the connection close; no exception, so not a bare EOF either.
  CHECK(p.sapp->eofs == 1);
  // The server answered with its own close_notify; the client got it before the EOF.
  CHECK(p.cssl->sslpipe()->state() == loop::SSLPipe::State::unwrapped);
  CHECK(p.sssl->sslpipe()->state() == loop::SSLPipe::State::unwrapped);
  CHECK(p.ct->aborts == 0);
  CHECK(p.st->aborts == 0);
}

// asyncio 3.11's _do_shutdown: the peer's close_notify answering ours completes the closing
// handshake and reaches the closer's eof_received (its answer ignored), then connection_lost.
TEST_CASE("close(): the peer's close_notify answer reaches the closer's eof_received") {
  for (bool client_closes : {true, false}) {
    for (bool keep_open : {false, true}) {
      loop::EventLoop lp;
      Pair p(lp, client_ctx(), server_ctx());
      REQUIRE(p.handshake());
      auto& closer = client_closes ? *p.capp : *p.sapp;
      auto& peer = client_closes ? *p.sapp : *p.capp;
      auto& below = client_closes ? *p.ct : *p.st;
      REQUIRE(run_until(lp, [&] { return closer.made && peer.made; }));
      closer.keep_open_on_eof = keep_open;  // a true cannot keep a closed connection open
      // The close_notify is what it hears, not the transport's EOF behind it (a socket closed
      // after the closing handshake reads no more).
      int below_eofs = -1;
      closer.on_eof = [&](App&) { below_eofs = below.eofs_received; };
      closer.transport->close();
      REQUIRE(run_until(lp, [&] { return p.capp->lost && p.sapp->lost; }));
      run_until(
          lp, [] { return false; }, 0.05);  // nothing may come after connection_lost
      CHECK(closer.events == std::vector<std::string>{"made", "eof", "lost"});
      CHECK(below_eofs == 0);
      CHECK(peer.events == std::vector<std::string>{"made", "eof", "lost"});
      CHECK(closer.lost_exc == nullptr);
      CHECK(peer.lost_exc == nullptr);
      CHECK(p.ct->aborts == 0);
      CHECK(p.st->aborts == 0);
    }
  }
}

TEST_CASE("both sides close at once: each hears the other's close_notify once") {
  loop::EventLoop lp;
  Pair p(lp, client_ctx(), server_ctx());
  REQUIRE(p.handshake());
  REQUIRE(run_until(lp, [&] { return p.capp->made && p.sapp->made; }));
  p.capp->transport->close();
  p.sapp->transport->close();
  REQUIRE(run_until(lp, [&] { return p.capp->lost && p.sapp->lost; }));
  CHECK(p.capp->events == std::vector<std::string>{"made", "eof", "lost"});
  CHECK(p.sapp->events == std::vector<std::string>{"made", "eof", "lost"});
}

// What 3.11 does not turn into an eof_received on the closing side: an abort, and a close()
// before the handshake ended (the application was never connected).
TEST_CASE("abort() or a close() during the handshake: no eof_received") {
  SECTION("abort") {
    loop::EventLoop lp;
    Pair p(lp, client_ctx(), server_ctx());
    REQUIRE(p.handshake());
    REQUIRE(run_until(lp, [&] { return p.capp->made && p.sapp->made; }));
    p.capp->transport->abort();
    REQUIRE(run_until(lp, [&] { return p.capp->lost && p.sapp->lost; }));
    CHECK(p.capp->events == std::vector<std::string>{"made", "lost"});
  }
  SECTION("close during the handshake") {
    loop::EventLoop lp;
    Pair p(lp, client_ctx(), server_ctx());
    p.start();
    auto early = p.cssl->app_transport();
    REQUIRE(early);
    early->close();
    REQUIRE(run_until(lp, [&] { return p.ct->lost() && p.st->lost(); }));
    CHECK(p.capp->events.empty());
    CHECK(p.sapp->events.empty());
    CHECK_THROWS_AS(p.cw.result(), std::system_error);  // a reset, as 3.11 reports it
    CHECK_THROWS_AS(p.sw.result(), std::system_error);
  }
}

// A TLS half-close (TLS 1.3 defines it; OpenSSL allows it in 1.2 too): write_eof sends
// close_notify and the writer goes on reading; a peer whose eof_received returns true keeps
// writing until it closes. What tls-proxy needs to pass a client's half-close upstream.
TEST_CASE("write_eof: close_notify half-closes, the peer's reply after it still arrives") {
  for (auto version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    loop::EventLoop lp;
    auto cctx = client_ctx();
    SSL_CTX_set_max_proto_version(cctx->native_handle(), version);
    Pair p(lp, cctx, server_ctx());
    REQUIRE(p.handshake());
    p.sapp->keep_open_on_eof = true;
    REQUIRE(p.capp->transport->can_write_eof());
    p.capp->transport->write("request");
    p.capp->transport->write_eof();
    CHECK_THROWS_AS(p.capp->transport->write("more"), std::runtime_error);
    p.capp->transport->write_eof();  // a second one does nothing
    REQUIRE(run_until(lp, [&] { return p.sapp->eofs == 1; }));
    CHECK(p.sapp->received == "request");
    CHECK_FALSE(p.sapp->lost);
    CHECK_FALSE(p.capp->lost);

    // The server answers after the client's EOF, then closes; the client reads it all.
    std::string reply(100000, 'r');
    p.sapp->transport->write(reply);
    p.sapp->transport->close();
    REQUIRE(run_until(lp, [&] { return p.capp->lost && p.sapp->lost; }));
    CHECK(p.capp->received == reply);
    CHECK(p.capp->eofs == 1);  // the server's close_notify
    CHECK(p.capp->lost_exc == nullptr);
    CHECK(p.sapp->lost_exc == nullptr);
    CHECK(p.cssl->sslpipe()->state() == loop::SSLPipe::State::unwrapped);
    CHECK(p.sssl->sslpipe()->state() == loop::SSLPipe::State::unwrapped);
    CHECK(p.ct->aborts == 0);
    CHECK(p.st->aborts == 0);
  }
}

// write_eof before the handshake ended (a proxy passing on a client's early EOF): the
// close_notify waits for the handshake, with or without data written before it.
TEST_CASE("write_eof during the handshake: sent after it, behind the data written before") {
  for (bool with_data : {false, true}) {
    loop::EventLoop lp;
    Pair p(lp, client_ctx(), server_ctx());
    p.sapp->keep_open_on_eof = true;
    p.start();
    auto early = p.cssl->app_transport();
    REQUIRE(early);
    if (with_data) early->write("early data");
    early->write_eof();
    REQUIRE(run_until(
        lp, [&] { return p.sapp->eofs == 1; }, 5));
    CHECK(p.sapp->received == (with_data ? "early data" : ""));
    p.sapp->transport->write("reply");
    p.sapp->transport->close();
    REQUIRE(run_until(lp, [&] { return p.capp->lost && p.sapp->lost; }));
    CHECK(p.capp->received == "reply");
    CHECK(p.capp->lost_exc == nullptr);
  }
}

TEST_CASE("EOF from the peer without close_notify: eof_received, then connection_lost") {
  loop::EventLoop lp;
  Pair p(lp, client_ctx(), server_ctx());
  REQUIRE(p.handshake());
  p.ct->close();  // the client's transport below closes: no close_notify
  REQUIRE(run_until(lp, [&] { return p.sapp->lost; }));
  CHECK(p.sapp->eofs == 1);
  CHECK(p.sapp->lost_exc == nullptr);
}

TEST_CASE("abort() closes at once, the peer sees a reset") {
  loop::EventLoop lp;
  Pair p(lp, client_ctx(), server_ctx());
  REQUIRE(p.handshake());
  p.capp->transport->abort();
  CHECK(p.capp->transport->is_closing());
  REQUIRE(run_until(lp, [&] { return p.capp->lost && p.sapp->lost; }));
  CHECK(p.ct->aborts == 1);
  CHECK(p.capp->lost_exc == nullptr);
  REQUIRE(p.sapp->lost_exc != nullptr);
  CHECK_THROWS_AS(std::rethrow_exception(p.sapp->lost_exc), std::system_error);
}

TEST_CASE("a wrong hostname is rejected with a clear error") {
  loop::EventLoop lp;
  Pair p(lp, client_ctx(), server_ctx(), "wrong.example");
  REQUIRE(p.handshake());
  CHECK_THROWS_AS(p.cw.result(), loop::SSLCertVerificationError);
  CHECK_THAT(message_of(p.cw), Catch::Contains("certificate verify failed") &&
                                   Catch::Contains("Hostname mismatch") &&
                                   Catch::Contains("wrong.example"));
  CHECK_FALSE(p.capp->made);
  CHECK_FALSE(p.capp->lost);  // never connected, never told
  // The server failed too (it got our alert), and both connections are gone.
  CHECK_THROWS_AS(p.sw.result(), loop::SSLError);
  REQUIRE(run_until(lp, [&] { return p.ct->lost() && p.st->lost(); }));
}

TEST_CASE("an unknown CA is rejected with OpenSSL's verify reason") {
  loop::EventLoop lp;
  Pair p(lp, client_ctx(TestCerts::get().unknown_ca_cert), server_ctx());
  REQUIRE(p.handshake());
  try {
    p.cw.result();
    FAIL("handshake succeeded");
  } catch (const loop::SSLCertVerificationError& e) {
    CHECK_THAT(e.what(), Catch::Contains(
                             "certificate verify failed: unable to get local issuer certificate"));
    CHECK(e.verify_code == 20);  // X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
  }
  CHECK_THAT(message_of(p.sw), Catch::Contains("unknown ca"));  // the alert we sent
}

TEST_CASE("an explicitly empty server_hostname skips hostname matching, not verification") {
  const auto& certs = TestCerts::get();
  // A client trusting both CAs; the server shows a certificate for other.example.
  auto trusting_both = [&] {
    auto ctx = client_ctx();
    ctx->load_verify_locations(certs.unknown_ca_cert);
    return ctx;
  };
  {
    loop::EventLoop lp;
    Pair p(lp, trusting_both(), server_ctx(certs.other_cert, certs.other_key), "localhost");
    REQUIRE(p.handshake());
    CHECK_THAT(message_of(p.cw), Catch::Contains("Hostname mismatch"));
    CHECK_THAT(message_of(p.sw), Catch::Contains("bad certificate"));  // the client's alert
  }
  {
    loop::EventLoop lp;
    Pair p(lp, trusting_both(), server_ctx(certs.other_cert, certs.other_key), "");
    REQUIRE(p.handshake());
    CHECK(message_of(p.cw) == "");
    CHECK(p.capp->made);
    p.ct->abort();
    run_until(lp, [&] { return p.sapp->lost; });
  }
  {
    loop::EventLoop lp;  // the chain is still verified
    Pair p(lp, client_ctx(), server_ctx(certs.other_cert, certs.other_key), "");
    REQUIRE(p.handshake());
    CHECK_THAT(message_of(p.cw), Catch::Contains("certificate verify failed"));
    CHECK_THAT(message_of(p.sw), Catch::Contains("unknown ca"));  // the client's alert
  }
  // No server_hostname at all is refused up front (asyncio: server_hostname is required).
  loop::EventLoop lp;
  CHECK_THROWS_AS(Pair(lp, client_ctx(), server_ctx(), std::nullopt), std::invalid_argument);
}

TEST_CASE("a peer that never speaks hits the handshake timeout") {
  loop::EventLoop lp;
  auto tracer = std::make_shared<Records>();
  lp.set_tracer(tracer);
  auto [ct, st] = FakeTransport::make_pair(lp);
  auto capp = std::make_shared<App>();
  auto silent = std::make_shared<App>();  // plain TCP peer that reads and never answers
  auto cw = lp.create_future<void>();
  loop::SSLProtocolOptions opts;
  opts.server_hostname = "localhost";
  opts.ssl_handshake_timeout = 0.2;
  auto cssl = SSLProtocol::make(lp, capp, client_ctx(), cw, opts);
  ct->start(cssl);
  st->start(silent);
  double t0 = lp.time();
  REQUIRE(run_until(lp, [&] { return cw.done() && ct->lost(); }));
  CHECK(lp.time() - t0 >= 0.19);
  CHECK(lp.time() - t0 < 10);
  CHECK_THAT(message_of(cw), Catch::Contains("SSL handshake is taking longer than 0.2 seconds: "
                                             "aborting the connection"));
  CHECK_THROWS_AS(cw.result(), std::system_error);
  CHECK(ct->aborts == 1);
  CHECK_FALSE(silent->received.empty());  // it did get our ClientHello
  auto ends = tracer->of("tls_handshake_end");
  REQUIRE(ends.size() == 1);
  CHECK(ends[0]["ok"] == false);
  CHECK_THAT(ends[0]["reason"].get<std::string>(), Catch::Contains("taking longer"));
  loop::SSLProtocolOptions bad;
  bad.ssl_handshake_timeout = 0;
  CHECK_THROWS_AS(SSLProtocol::make(lp, capp, client_ctx(), {}, bad), std::invalid_argument);
}

TEST_CASE("garbage fed to a server fails that connection with an SSLError, nothing else") {
  loop::EventLoop lp;
  int handler_calls = 0;
  lp.set_exception_handler(
      [&](loop::EventLoop&, const loop::ExceptionContext&) { ++handler_calls; });
  auto [ct, st] = FakeTransport::make_pair(lp);
  auto plain = std::make_shared<App>();
  plain->on_made = [](App& a) { a.transport->write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"); };
  auto sapp = std::make_shared<App>();
  auto sw = lp.create_future<void>();
  loop::SSLProtocolOptions opts;
  opts.server_side = true;
  auto sssl = SSLProtocol::make(lp, sapp, server_ctx(), sw, opts);
  ct->start(plain);
  st->start(sssl);
  REQUIRE(run_until(lp, [&] { return sw.done() && st->lost() && plain->lost; }));
  CHECK_THROWS_AS(sw.result(), loop::SSLError);
  CHECK_THAT(message_of(sw), Catch::Contains("SSL handshake failed"));
  CHECK(st->aborts == 1);
  CHECK_FALSE(sapp->made);
  CHECK(handler_calls == 0);  // a peer's doing, as OSError in asyncio: not logged

  // And the next connection on the same context is served.
  Pair p(lp, client_ctx(), sssl->context());
  REQUIRE(p.handshake());
  CHECK(message_of(p.sw) == "");
}

TEST_CASE("a TLS 1.1-only peer is refused by default, accepted when allowed") {
  auto old_server = [] {
    auto ctx = server_ctx();
    ctx->set_ciphers("DEFAULT:@SECLEVEL=0");
    ctx->set_minimum_version(loop::TLSVersion::tlsv1);
    ctx->set_maximum_version(loop::TLSVersion::tlsv1_1);
    return ctx;
  };
  {
    loop::EventLoop lp;
    Pair p(lp, client_ctx(), old_server());
    REQUIRE(p.handshake());
    CHECK_THROWS_AS(p.cw.result(), loop::SSLError);
    CHECK_THAT(message_of(p.cw), Catch::Contains("SSL handshake failed"));
    CHECK_THAT(message_of(p.sw), Catch::Contains("unsupported protocol"));  // the server's side
    CHECK_FALSE(p.capp->made);
  }
  {
    loop::EventLoop lp;
    auto lenient = client_ctx();
    lenient->set_ciphers("DEFAULT:@SECLEVEL=0");
    lenient->set_minimum_version(loop::TLSVersion::tlsv1_1);
    Pair p(lp, lenient, old_server());
    REQUIRE(p.handshake());
    CHECK(message_of(p.cw) == "");
    CHECK(p.cssl->app_transport()->extra<std::string>("version") == std::string("TLSv1.1"));
  }
}

TEST_CASE("bytes received before the layer was installed are not lost (start_tls)") {
  loop::EventLoop lp;
  auto [ct, st] = FakeTransport::make_pair(lp);
  // The server side starts as plain TCP and reads ahead the client's first TLS bytes.
  auto plain = std::make_shared<App>();
  st->start(plain);
  auto capp = std::make_shared<App>();
  auto cw = lp.create_future<void>();
  loop::SSLProtocolOptions copts;
  copts.server_hostname = "localhost";
  auto cssl = SSLProtocol::make(lp, capp, client_ctx(), cw, copts);
  cssl->app_transport()->write("early");
  ct->start(cssl);
  REQUIRE(run_until(lp, [&] { return !plain->received.empty(); }));
  // Upgrade: the new layer gets what was read ahead, then the transport's connection.
  auto sapp = std::make_shared<App>();
  auto sw = lp.create_future<void>();
  loop::SSLProtocolOptions sopts;
  sopts.server_side = true;
  sopts.call_connection_made = false;
  auto sssl = SSLProtocol::make(lp, sapp, server_ctx(), sw, sopts);
  st->set_protocol(sssl);
  sssl->data_received(plain->received);
  sssl->connection_made(*st);
  REQUIRE(run_until(lp, [&] { return sapp->received == "early"; }));
  CHECK(message_of(sw) == "");
  CHECK_FALSE(sapp->made);  // call_connection_made=false: start_tls's protocol is connected
  ct->abort();
  run_until(lp, [&] { return st->lost(); });
}

TEST_CASE("a BufferedProtocol application gets the data through its own buffers") {
  struct Buffered : loop::BufferedProtocol {
    char buf[1000];
    std::string received;
    int calls = 0;
    std::span<char> get_buffer(std::size_t) override { return {buf, sizeof buf}; }
    void buffer_updated(std::size_t n) override {
      received.append(buf, n);
      ++calls;
    }
  };
  loop::EventLoop lp;
  auto [ct, st] = FakeTransport::make_pair(lp);
  auto capp = std::make_shared<App>();
  std::string data(50000, 'z');
  capp->on_made = [&](App& a) { a.transport->write(data); };
  auto sapp = std::make_shared<Buffered>();
  loop::SSLProtocolOptions copts, sopts;
  copts.server_hostname = "localhost";
  sopts.server_side = true;
  auto cssl = SSLProtocol::make(lp, capp, client_ctx(), {}, copts);
  auto sssl = SSLProtocol::make(lp, sapp, server_ctx(), {}, sopts);
  ct->start(cssl);
  st->start(sssl);
  REQUIRE(run_until(lp, [&] { return sapp->received.size() >= data.size(); }));
  CHECK(sapp->received == data);
  CHECK(sapp->calls >= 50);
  ct->abort();
  run_until(lp, [&] { return st->lost(); });
}

TEST_CASE("an application protocol that throws in data_received fails its connection") {
  loop::EventLoop lp;
  std::vector<std::string> messages;
  lp.set_exception_handler(
      [&](loop::EventLoop&, const loop::ExceptionContext& c) { messages.push_back(c.message); });
  Pair p(lp, client_ctx(), server_ctx());
  p.sapp->on_data = [](App&) { throw std::logic_error("app bug"); };
  p.capp->on_made = [](App& a) { a.transport->write("x"); };
  p.start();
  REQUIRE(run_until(lp, [&] { return p.sapp->lost && p.capp->lost; }));
  REQUIRE(messages.size() == 1);
  CHECK(messages[0] == "application protocol failed to receive SSL data");
  CHECK_THROWS_AS(std::rethrow_exception(p.sapp->lost_exc), std::logic_error);
}

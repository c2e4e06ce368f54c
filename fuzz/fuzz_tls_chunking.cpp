// A protocol fed arbitrary data_received chunking: a TLS client and server (SSLProtocol) over
// an in-memory pair, with the bytes on the wire re-cut into chunks whose sizes the input
// chooses, both ways. Input: "<chunk sizes>\n--\n<payload>". The client sends the payload (in
// writes cut the same way, the first ones before the handshake is done), the server echoes
// it; checks: the handshake succeeds whatever the cuts, the echo is the payload byte for byte,
// and close() ends both sides cleanly (close_notify, no error).
#include <cstddef>
#include <cstdint>
#include <loop/loop.hpp>
#include <loop/sslproto.hpp>
#include <memory>

#include "fake_transport.hpp"
#include "fuzz_support.hpp"
#include "test_certs.hpp"

using loop::fuzz::Chunker;
using loop::test::FakeTransport;

namespace {

// Sits between a transport and the protocol above it and re-cuts every data_received.
struct Rechunker : loop::Protocol {
  std::shared_ptr<loop::Protocol> inner;
  Chunker chunker;
  Rechunker(std::shared_ptr<loop::Protocol> p, std::string sizes)
      : inner(std::move(p)), chunker(std::move(sizes)) {}
  void connection_made(loop::BaseTransport& t) override { inner->connection_made(t); }
  void connection_lost(std::exception_ptr e) override { inner->connection_lost(e); }
  void pause_writing() override { inner->pause_writing(); }
  void resume_writing() override { inner->resume_writing(); }
  bool eof_received() override { return inner->eof_received(); }
  void data_received(std::string_view data) override {
    for (auto piece : chunker.split(data)) inner->data_received(piece);
  }
};

struct Echo : loop::Protocol {
  loop::Transport* transport = nullptr;
  bool lost = false;
  std::exception_ptr lost_exc;
  void connection_made(loop::BaseTransport& t) override {
    transport = dynamic_cast<loop::Transport*>(&t);
  }
  void data_received(std::string_view d) override { transport->write(d); }
  void connection_lost(std::exception_ptr e) override {
    lost = true;
    lost_exc = e;
  }
};

struct Client : loop::Protocol {
  std::vector<std::string> writes;
  std::size_t expected = 0;
  std::string received;
  loop::Transport* transport = nullptr;
  bool lost = false;
  std::exception_ptr lost_exc;
  void connection_made(loop::BaseTransport& t) override {
    transport = dynamic_cast<loop::Transport*>(&t);
    for (auto& w : writes) transport->write(w);
    if (expected == 0) transport->close();
  }
  void data_received(std::string_view d) override {
    received += d;
    if (received.size() >= expected) transport->close();
  }
  void connection_lost(std::exception_ptr e) override {
    lost = true;
    lost_exc = e;
  }
};

loop::EventLoop& the_loop() {
  static auto* lp = [] {
    auto* l = new loop::EventLoop;
    l->set_exception_handler([](loop::EventLoop&, const loop::ExceptionContext& ctx) {
      std::fprintf(stderr, "exception handler called: %s\n", ctx.message.c_str());
      std::abort();
    });
    return l;
  }();
  return *lp;
}

const loop::test::TestCerts& certs() {
  return loop::test::TestCerts::get();
}

std::shared_ptr<loop::SSLContext> server_context() {
  static auto ctx = [] {
    auto c = loop::SSLContext::create_default_context(loop::Purpose::client_auth);
    c->load_cert_chain(certs().server_cert, certs().server_key);
    return c;
  }();
  return ctx;
}

std::shared_ptr<loop::SSLContext> client_context() {
  static auto ctx =
      loop::SSLContext::create_default_context(loop::Purpose::server_auth, certs().ca_cert);
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& lp = the_loop();
  const auto [control, payload] = loop::fuzz::split_input(data, size);
  if (payload.size() > 64 * 1024) return 0;  // the point is the cuts, not the volume
  // Not a structured binding: clang 14 cannot capture those in a lambda.
  std::shared_ptr<FakeTransport> ct, st;
  std::tie(ct, st) = FakeTransport::make_pair(lp);

  auto client = std::make_shared<Client>();
  client->expected = payload.size();
  for (auto w : Chunker(control).split(payload)) client->writes.emplace_back(w);
  auto server = std::make_shared<Echo>();
  auto cw = lp.create_future<void>();
  auto sw = lp.create_future<void>();
  loop::SSLProtocolOptions copts;
  copts.server_hostname = "localhost";
  auto cssl = loop::SSLProtocol::make(lp, client, client_context(), cw, copts);
  loop::SSLProtocolOptions sopts;
  sopts.server_side = true;
  auto sssl = loop::SSLProtocol::make(lp, server, server_context(), sw, sopts);
  // The server's wire is cut by the control bytes, the client's by them reversed.
  std::string reversed(control.rbegin(), control.rend());
  ct->start(std::make_shared<Rechunker>(cssl, reversed));
  st->start(std::make_shared<Rechunker>(sssl, control));

  // The application's connection_lost comes a callback after the transport's (call_soon).
  FUZZ_CHECK(loop::fuzz::run_until(
      lp, [&] { return ct->lost() && st->lost() && client->lost && server->lost; }));
  FUZZ_CHECK(cw.done() && cw.exception() == nullptr);
  FUZZ_CHECK(sw.done() && sw.exception() == nullptr);
  FUZZ_CHECK(client->received == payload);
  FUZZ_CHECK(client->lost && client->lost_exc == nullptr);
  FUZZ_CHECK(server->lost && server->lost_exc == nullptr);
  return 0;
}

// The TLS layer as a server (SSLProtocol over SSLPipe) fed arbitrary bytes from a client that
// speaks no TLS, in chunks whose sizes the input chooses. Input: "<chunk sizes>\n--\n<bytes>"
// (no separator: the bytes in one chunk). Checks: no crash or sanitizer report, the server
// never hands the application data (there was no handshake), the connection always ends
// (connection_lost on both sides once the client closes), and a peer's garbage never reaches
// the loop's exception handler (asyncio does not log SSLError, an OSError, in _fatal_error).
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

struct App : loop::Protocol {
  std::string received;
  bool made = false, lost = false;
  void connection_made(loop::BaseTransport&) override { made = true; }
  void data_received(std::string_view d) override { received += d; }
  void connection_lost(std::exception_ptr) override { lost = true; }
};

// The client: writes the chunks once connected, then closes.
struct Garbage : App {
  std::vector<std::string> chunks;
  void connection_made(loop::BaseTransport& t) override {
    App::connection_made(t);
    auto& tr = dynamic_cast<loop::Transport&>(t);
    for (auto& c : chunks) tr.write(c);
    tr.close();
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

std::shared_ptr<loop::SSLContext> server_context() {
  static auto ctx = [] {
    const auto& certs = loop::test::TestCerts::get();
    auto c = loop::SSLContext::create_default_context(loop::Purpose::client_auth);
    c->load_cert_chain(certs.server_cert, certs.server_key);
    return c;
  }();
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& lp = the_loop();
  auto [control, payload] = loop::fuzz::split_input(data, size);
  // Not a structured binding: clang 14 cannot capture those in a lambda.
  std::shared_ptr<FakeTransport> ct, st;
  std::tie(ct, st) = FakeTransport::make_pair(lp);
  auto client = std::make_shared<Garbage>();
  for (auto c : Chunker(control).split(payload)) client->chunks.emplace_back(c);
  auto app = std::make_shared<App>();
  auto waiter = lp.create_future<void>();
  loop::SSLProtocolOptions opts;
  opts.server_side = true;
  auto ssl = loop::SSLProtocol::make(lp, app, server_context(), waiter, opts);
  st->start(ssl);
  ct->start(client);
  FUZZ_CHECK(loop::fuzz::run_until(lp, [&] { return st->lost() && ct->lost() && waiter.done(); }));
  FUZZ_CHECK(!app->made);
  FUZZ_CHECK(app->received.empty());
  FUZZ_CHECK(waiter.exception() != nullptr);
  return 0;
}

// start_tls on live connections and ssl= against Python's ssl + asyncio as the peer (a
// subprocess script); certificates made at run time.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <functional>
#include <loop/loop.hpp>
#include <loop/sslproto.hpp>
#include <tuple>

#include "python_script_peer.hpp"
#include "test_certs.hpp"
#include "transport_helpers.hpp"

using loop::test::TestCerts;
using test::PythonPeer;
using test::RecordingProtocol;

namespace {

std::shared_ptr<loop::SSLContext> client_ctx() {
  return loop::SSLContext::create_default_context(loop::Purpose::server_auth,
                                                  TestCerts::get().ca_cert);
}
std::shared_ptr<loop::SSLContext> server_ctx() {
  auto ctx = loop::SSLContext::create_default_context(loop::Purpose::client_auth);
  ctx->load_cert_chain(TestCerts::get().server_cert, TestCerts::get().server_key);
  return ctx;
}

// The server side's upgrade, a Task (its arguments live in the coroutine's frame).
loop::Coroutine<void> upgrade(loop::EventLoop& lp, std::shared_ptr<loop::Transport> t,
                              std::shared_ptr<RecordingProtocol> p,
                              std::shared_ptr<loop::Transport>* out, loop::CipherInfo* cipher) {
  auto ctx = server_ctx();
  auto u = lp.start_tls(t, p, ctx, true);
  *out = co_await std::move(u);
  *cipher = std::any_cast<loop::CipherInfo>((*out)->get_extra_info("cipher"));
  // Data may arrive between the handshake's end and this task's resumption (asyncio too).
  if (!p->received.empty()) (*out)->write("echo:" + p->received);
}

}  // namespace

TEST_CASE("our ssl create_connection to a Python asyncio TLS echo server") {
  const auto& certs = TestCerts::get();
  PythonPeer peer(R"(
import asyncio, ssl, sys
async def handle(r, w):
    data = await r.readexactly(5)
    w.write(b'echo:' + data + w.get_extra_info('ssl_object').version().encode())
    await w.drain(); w.close()
async def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    srv = await asyncio.start_server(handle, '127.0.0.1', 0, ssl=ctx)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(30)
asyncio.run(main())
)",
                  {certs.server_cert, certs.server_key});
  int port = peer.port();
  loop::EventLoop lp;
  auto factory = [] { return std::make_shared<RecordingProtocol>(); };
  loop::ConnectionOptions o;
  o.ssl = client_ctx();
  o.server_hostname = "localhost";
  std::string host = "127.0.0.1";
  auto c = lp.create_connection(factory, host, port, o);
  auto [t, p] = lp.run_until_complete(std::move(c));
  t->write("hello");
  test::run_until(lp, [&] { return p->lost; });
  CHECK(p->received == "echo:helloTLSv1.3");
  CHECK(p->lost_error == nullptr);  // Python's close_notify: a clean end
}

TEST_CASE("start_tls, client side, against a Python asyncio server upgrading after STARTTLS") {
  const auto& certs = TestCerts::get();
  PythonPeer peer(R"(
import asyncio, ssl, sys
class P(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.buf, self.tls = t, b'', None
    def data_received(self, d):
        if self.tls is None:
            self.buf += d
            if self.buf == b'STARTTLS\n':
                self.t.write(b'OK\n')
                asyncio.ensure_future(self.upgrade())
        else:
            self.tls.write(b'echo:' + d)
    async def upgrade(self):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        tls = await asyncio.get_running_loop().start_tls(self.t, self, ctx, server_side=True)
        print('server tls', tls.get_extra_info('ssl_object').version(), flush=True)
        self.tls = tls
async def main():
    srv = await asyncio.get_running_loop().create_server(P, '127.0.0.1', 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(30)
asyncio.run(main())
)",
                  {certs.server_cert, certs.server_key});
  int port = peer.port();
  loop::EventLoop lp;
  auto factory = [] { return std::make_shared<RecordingProtocol>(); };
  std::string host = "127.0.0.1";
  auto c = lp.create_connection(factory, host, port);
  auto [t, p] = lp.run_until_complete(std::move(c));
  t->write("STARTTLS\n");
  test::run_until(lp, [&] { return p->received == "OK\n"; });
  auto up = lp.start_tls(t, p, client_ctx(), false, "localhost", 10.0);
  std::shared_ptr<loop::Transport> tls = lp.run_until_complete(std::move(up));
  REQUIRE(tls != t);
  CHECK(std::dynamic_pointer_cast<loop::SSLProtocol>(t->get_protocol()) != nullptr);
  CHECK(tls->get_protocol() == p);
  CHECK(std::any_cast<loop::CipherInfo>(tls->get_extra_info("cipher")).protocol == "TLSv1.3");
  CHECK(peer.readline() == "server tls TLSv1.3");
  tls->write("ping");
  test::run_until(lp, [&] { return p->received == "OK\necho:ping"; });
  // The protocol's connection_made ran once, for the plaintext connection.
  CHECK(std::count(p->events.begin(), p->events.end(), "connection_made") == 1);
  tls->close();
  test::run_until(lp, [&] { return p->lost; });
}

TEST_CASE("start_tls, server side, with a Python asyncio client doing loop.start_tls") {
  const auto& certs = TestCerts::get();
  // A plain listening socket: the accepted connection goes to connect_accepted_socket, which
  // gives the transport to upgrade.
  int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto addr = loop::SocketAddress::from_ip("127.0.0.1", 0);
  REQUIRE(::bind(ls, addr.data(), addr.size()) == 0);
  REQUIRE(::listen(ls, 1) == 0);
  loop::SocketAddress bound;
  socklen_t len = loop::SocketAddress::capacity();
  ::getsockname(ls, bound.data(), &len);
  bound.set_size(len);
  PythonPeer peer(R"(
import asyncio, ssl, sys
class P(asyncio.Protocol):
    def __init__(self): self.got = b''; self.ok = asyncio.get_running_loop().create_future()
    def data_received(self, d):
        self.got += d
        if self.got == b'OK\n' and not self.ok.done(): self.ok.set_result(None)
    def connection_lost(self, exc): print('lost', exc, flush=True)
async def main():
    loop = asyncio.get_running_loop()
    t, p = await loop.create_connection(P, '127.0.0.1', int(sys.argv[2]))
    t.write(b'STARTTLS\n')
    await p.ok
    ctx = ssl.create_default_context(cafile=sys.argv[1])
    tls = await loop.start_tls(t, p, ctx, server_hostname='localhost')
    p.got = b''
    tls.write(b'hello')
    for _ in range(200):
        if p.got: break
        await asyncio.sleep(0.01)
    print('client got', p.got.decode(), tls.get_extra_info('ssl_object').version(), flush=True)
    tls.close()
    await asyncio.sleep(0.5)
asyncio.run(main())
)",
                  {certs.ca_cert, std::to_string(bound.port())});
  int fd = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
  ::close(ls);
  REQUIRE(fd >= 0);
  loop::EventLoop lp;
  auto factory = [] { return std::make_shared<RecordingProtocol>(); };
  auto ac = lp.connect_accepted_socket(factory, fd);
  auto [t, p] = lp.run_until_complete(std::move(ac));
  std::shared_ptr<loop::Transport> tls;
  std::shared_ptr<RecordingProtocol> proto = p;
  loop::CipherInfo cipher;
  std::function<void()> react = [&, tp = t, pp = p.get()] {
    if (tls) {  // decrypted: echo it
      tls->write("echo:" + pp->received);
      return;
    }
    if (pp->received != "STARTTLS\n") return;
    pp->received.clear();
    // Nothing may be read in plaintext past this line: the peer's ClientHello is for TLS.
    tp->pause_reading();
    tp->write("OK\n");
    lp.create_task(upgrade(lp, tp, proto, &tls, &cipher));
  };
  p->on_data = [&](std::string_view) { react(); };
  // The STARTTLS line may have come in while connect_accepted_socket was finishing.
  if (!p->received.empty()) react();
  test::run_until(lp, [&] { return p->lost; });
  REQUIRE(tls);
  CHECK(cipher.protocol == "TLSv1.3");
  CHECK(p->received == "hello");
  CHECK(peer.readline() == "client got echo:hello TLSv1.3");
  // Python closed with close_notify: a clean end on both sides.
  CHECK(p->lost_error == nullptr);
  CHECK(peer.readline() == "lost None");
}

TEST_CASE("start_tls: a failed handshake closes the transport and throws") {
  loop::EventLoop lp;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  auto factory = [] { return std::make_shared<RecordingProtocol>(); };
  auto ac = lp.connect_accepted_socket(factory, sv[0]);
  auto [t, p] = lp.run_until_complete(std::move(ac));
  // The peer answers the ClientHello with plaintext garbage (reading paused first, as a
  // protocol about to upgrade does, so that the old protocol does not read it).
  t->pause_reading();
  REQUIRE(::write(sv[1], "garbage garbage garbage\r\n", 25) == 25);
  auto up = lp.start_tls(t, p, client_ctx(), false, "localhost", 5.0);
  CHECK_THROWS_AS(lp.run_until_complete(std::move(up)), loop::SSLError);
  test::run_until(lp, [&] { return t->is_closing(); });
  char buf[4096];
  ssize_t n;
  while ((n = ::read(sv[1], buf, sizeof buf)) > 0) {
  }
  CHECK(n == 0);  // our side closed the socket
  ::close(sv[1]);
  // start_tls refuses a missing context.
  CHECK_THROWS_AS(lp.run_until_complete(lp.start_tls(t, p, nullptr)), std::invalid_argument);
}

namespace {

// One side's upgrade, as a Task; the result goes to *out (GCC 12: no temporaries in co_await).
loop::Coroutine<void> upgrade_side(loop::EventLoop& lp, std::shared_ptr<loop::Transport> t,
                                   std::shared_ptr<RecordingProtocol> p, bool server_side,
                                   std::optional<std::string> hostname,
                                   std::shared_ptr<loop::Transport>* out) {
  auto ctx = server_side ? server_ctx() : client_ctx();
  auto u = lp.start_tls(t, p, ctx, server_side, hostname, 10.0);
  *out = co_await std::move(u);
}

// Both ends of a socketpair as plaintext transports of this loop (server end first).
struct PlainPair {
  std::shared_ptr<loop::Transport> ts, tc;
  std::shared_ptr<RecordingProtocol> ps, pc;
};
PlainPair plain_pair(loop::EventLoop& lp) {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  auto factory = [] { return std::make_shared<RecordingProtocol>(); };
  PlainPair pp;
  auto a = lp.connect_accepted_socket(factory, sv[0]);
  std::tie(pp.ts, pp.ps) = lp.run_until_complete(std::move(a));
  auto b = lp.connect_accepted_socket(factory, sv[1]);
  std::tie(pp.tc, pp.pc) = lp.run_until_complete(std::move(b));
  return pp;
}

// Upgrades both ends at once; returns (server's, client's) TLS transports.
std::pair<std::shared_ptr<loop::Transport>, std::shared_ptr<loop::Transport>> upgrade_both(
    loop::EventLoop& lp, const PlainPair& pp) {
  std::shared_ptr<loop::Transport> tls_s, tls_c;
  auto server_task = lp.create_task(upgrade_side(lp, pp.ts, pp.ps, true, std::nullopt, &tls_s));
  auto client_task = lp.create_task(upgrade_side(lp, pp.tc, pp.pc, false, "localhost", &tls_c));
  test::run_until(lp, [&] { return server_task.done() && client_task.done(); });
  server_task.result();
  client_task.result();
  REQUIRE(tls_s);
  REQUIRE(tls_c);
  return {tls_s, tls_c};
}

}  // namespace

TEST_CASE("start_tls on both sides of a live connection: the old transports refuse use") {
  loop::EventLoop lp;
  auto pp = plain_pair(lp);
  auto& [ts, tc, ps, pc] = pp;
  // Plaintext first; what was written before the upgrade arrives before any TLS record.
  tc->write("STARTTLS\n");
  test::run_until(lp, [&] { return ps->received == "STARTTLS\n"; });
  ps->received.clear();

  auto [tls_s, tls_c] = upgrade_both(lp, pp);

  // The plaintext transports refuse whatever could put bytes on the wire or steal the
  // records; reading their extra info is still fine.
  CHECK_THROWS_AS(tc->write("plaintext"), std::runtime_error);
  CHECK_THROWS_AS(tc->write_eof(), std::runtime_error);
  CHECK_THROWS_AS(tc->pause_reading(), std::runtime_error);
  CHECK_THROWS_AS(tc->resume_reading(), std::runtime_error);
  CHECK_THROWS_AS(tc->set_protocol(pc), std::runtime_error);
  CHECK_THROWS_AS(tc->set_write_buffer_limits(1024), std::runtime_error);
  CHECK_THROWS_AS(ts->write("plaintext"), std::runtime_error);
  CHECK_THROWS_AS(lp.run_until_complete(lp.start_tls(ts, ps, server_ctx(), true)),
                  std::runtime_error);
  CHECK(tc->get_extra_info("socket").has_value());

  tls_c->write("ping");
  test::run_until(lp, [&] { return ps->received == "ping"; });
  tls_s->write("pong");
  test::run_until(lp, [&] { return pc->received.size() >= 4; });
  CHECK(pc->received == "pong");
  CHECK(std::any_cast<loop::CipherInfo>(tls_c->get_extra_info("cipher")).protocol == "TLSv1.3");

  tls_c->close();
  test::run_until(lp, [&] { return pc->lost && ps->lost; });
  CHECK(pc->lost_error == nullptr);
  CHECK(ps->lost_error == nullptr);
  // The session's details outlive the connection (asyncio keeps them too).
  CHECK(std::any_cast<loop::CipherInfo>(tls_c->get_extra_info("cipher")).protocol == "TLSv1.3");
  CHECK(std::any_cast<loop::CipherInfo>(tls_s->get_extra_info("cipher")).protocol == "TLSv1.3");
  CHECK(tls_c->get_extra_info("ssl_object").has_value());
  CHECK(tls_s->get_extra_info("sslcontext").has_value());
  CHECK(tls_c->is_closing());
}

TEST_CASE("start_tls refuses a transport that cannot be upgraded") {
  loop::EventLoop lp;
  auto pp = plain_pair(lp);
  auto [tls_s, tls_c] = upgrade_both(lp, pp);
  // TLS in TLS: asyncio's TypeError("transport ... is not supported by start_tls()").
  CHECK_THROWS_AS(lp.run_until_complete(lp.start_tls(tls_c, pp.pc, client_ctx())),
                  std::invalid_argument);
  tls_c->abort();
  test::run_until(lp, [&] { return pp.ps->lost; });
}

TEST_CASE("start_tls with invalid options throws and leaves the transport as it was") {
  loop::EventLoop lp;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  auto factory = [] { return std::make_shared<RecordingProtocol>(); };
  auto a = lp.connect_accepted_socket(factory, sv[0]);
  auto [t, p] = lp.run_until_complete(std::move(a));
  // A client context that checks hostnames, without a hostname (asyncio's ValueError).
  CHECK_THROWS_AS(lp.run_until_complete(lp.start_tls(t, p, client_ctx(), false, std::nullopt)),
                  std::invalid_argument);
  CHECK_THROWS_AS(lp.run_until_complete(lp.start_tls(t, p, client_ctx(), false, "localhost", -1.0)),
                  std::invalid_argument);
  // Still the plaintext transport it was: it writes, and reads into its protocol.
  t->write("still plain");
  char buf[64];
  ssize_t n = ::read(sv[1], buf, sizeof buf);
  CHECK(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0) == "still plain");
  REQUIRE(::write(sv[1], "back", 4) == 4);
  test::run_until(lp, [&] { return p->received == "back"; });
  CHECK(t->get_protocol() == p);
  ::close(sv[1]);
}

// Differential scenarios of the loop's TLS layer: create_server(ssl) / create_connection(ssl),
// close_notify, handshake failures, start_tls, streams over TLS, extra info (the asyncio
// half: diff_tls.py). Most scenarios keep one log per side and print the two one after the
// other: the order within a side is pinned, not the interleaving of the two sides.
#include <sys/socket.h>

#include <cstdio>
#include <functional>
#include <loop/loop.hpp>
#include <loop/sslproto.hpp>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "scenario.hpp"
#include "test_certs.hpp"

using diff::say;
using loop::test::TestCerts;

// `co_await f(args)` as a statement, with the awaitable in a named variable first (README: a
// GCC 12 bug with temporaries in co_await).
#define AWAIT(...)                \
  do {                            \
    auto awaited_ = __VA_ARGS__;  \
    co_await std::move(awaited_); \
  } while (0)

namespace {

const std::string kHost = "127.0.0.1";

using Ctx = std::shared_ptr<loop::SSLContext>;

Ctx server_ctx(const std::string& name = "server") {
  const auto& c = TestCerts::get();
  auto ctx = loop::SSLContext::create_default_context(loop::Purpose::client_auth);
  if (name == "other")
    ctx->load_cert_chain(c.other_cert, c.other_key);
  else
    ctx->load_cert_chain(c.server_cert, c.server_key);
  return ctx;
}

Ctx client_ctx(const std::string& ca = "ca") {
  const auto& c = TestCerts::get();
  return loop::SSLContext::create_default_context(loop::Purpose::server_auth,
                                                  ca == "ca" ? c.ca_cert : c.unknown_ca_cert);
}

// Python's type(e).__name__, with the ssl module's classes the scenarios meet.
std::string ename(std::exception_ptr e) {
  if (!e) return "None";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "(exception: %s)\n", ex.what());  // for the reader; not compared
  } catch (...) {
  }
  try {
    std::rethrow_exception(e);
  } catch (const loop::SSLCertVerificationError&) {
    return "SSLCertVerificationError";
  } catch (const loop::SSLError&) {
    return "SSLError";
  } catch (const loop::IncompleteReadError&) {
    return "IncompleteReadError";
  } catch (const std::exception& ex) {
    return diff::exception_name(ex);
  } catch (...) {
    return "?";
  }
}

// What both libraries report when the peer fails a handshake: asyncio sees a bare EOF
// (ConnectionResetError), libloop the TLS alert the peer sent (SSLError). Both are OSErrors
// in Python; the README lists the alert as a departure.
bool is_os_error(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const loop::SSLError&) {
    return true;
  } catch (const std::system_error&) {
    return true;
  } catch (...) {
    return false;
  }
}

std::string os_error(std::exception_ptr e) {
  return e && is_os_error(e) ? "OSError" : ename(e);
}

bool is_ssl_error(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const loop::SSLError&) {
    return true;
  } catch (...) {
    return false;
  }
}

// Python's repr of a str (the scenarios' strings have no quote or backslash but \n and \r).
std::string repr(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else
      out += c;
  }
  return out + "'";
}

// Python's repr of the lists of lists of strings and numbers a certificate dict is made of.
std::string pyrepr(const nlohmann::json& j) {
  if (j.is_null()) return "None";
  if (j.is_string()) return repr(j.get<std::string>());
  if (j.is_array()) {
    std::string out = "[";
    for (std::size_t i = 0; i < j.size(); ++i) out += (i ? ", " : "") + pyrepr(j[i]);
    return out + "]";
  }
  return j.dump();
}

std::string cn(const nlohmann::json& cert, const char* field = "subject") {
  for (const auto& rdn : cert[field])
    for (const auto& pair : rdn)
      if (pair[0] == "commonName") return pair[1].get<std::string>();
  return "?";
}

nlohmann::json peercert(const loop::BaseTransport& t) {
  auto v = t.get_extra_info("peercert");
  if (auto* j = std::any_cast<nlohmann::json>(&v)) return *j;
  return nullptr;
}

struct Log {
  std::string name;
  std::vector<std::string> lines;
  explicit Log(std::string n) : name(std::move(n)) {}
  template <class... A>
  void operator()(const A&... args) {
    std::ostringstream line;
    bool first = true;
    ((line << (first ? "" : " "), diff::put(line, args), first = false), ...);
    lines.push_back(line.str());
  }
  void show() const {
    for (const auto& l : lines) say(name + ":", l);
  }
  std::string joined() const {  // Python's repr of the list of lines
    std::string out = "[";
    for (std::size_t i = 0; i < lines.size(); ++i) out += (i ? ", " : "") + repr(lines[i]);
    return out + "]";
  }
};

// Logs every callback (consecutive data_received once); hooks for reactions. The side that
// closed its transport does not log eof_received (unless strict): whether the peer's
// close_notify answer reaches it is pinned by the clean_close_* scenarios only.
struct Rec : loop::Protocol {
  Log* log;
  bool eof_result;
  bool strict;
  bool closed_by_me = false;
  loop::Transport* t = nullptr;
  std::string received;
  loop::Future<void> lost;
  std::function<void(Rec&, loop::Transport&)> on_made;
  std::function<void(Rec&, std::string_view)> on_data;

  Rec(loop::EventLoop& lp, Log* l, bool eof = false, bool strict_eof = false)
      : log(l), eof_result(eof), strict(strict_eof), lost(lp.create_future<void>()) {}
  void close() { close(*t); }
  void close(loop::Transport& tr) {
    closed_by_me = true;
    tr.close();
  }
  void connection_made(loop::BaseTransport& tr) override {
    t = dynamic_cast<loop::Transport*>(&tr);
    (*log)("connection_made");
    if (on_made) on_made(*this, *t);
  }
  void data_received(std::string_view d) override {
    received.append(d);
    if (log->lines.empty() || log->lines.back() != "data_received") (*log)("data_received");
    if (on_data) on_data(*this, d);
  }
  bool eof_received() override {
    if (strict || !closed_by_me) (*log)("eof_received");
    return eof_result;
  }
  void connection_lost(std::exception_ptr e) override {
    (*log)("connection_lost", ename(e));
    if (!lost.done()) lost.set_result();
  }
};

using RecPtr = std::shared_ptr<Rec>;
using Factory = std::function<std::shared_ptr<loop::Protocol>()>;
using Conn = std::pair<std::shared_ptr<loop::Transport>, RecPtr>;

template <class F>
void run(F body) {
  loop::EventLoop lp;
  lp.run_until_complete(body(lp));
  lp.close();
}

loop::Coroutine<std::shared_ptr<loop::Server>> tls_server(
    loop::EventLoop& lp, Factory factory, Ctx ctx = nullptr,
    std::optional<double> handshake_timeout = std::nullopt) {
  loop::ServerOptions so;
  so.ssl = ctx ? ctx : server_ctx();
  so.ssl_handshake_timeout = handshake_timeout;
  auto c = lp.create_server(std::move(factory), kHost, 0, so);
  co_return co_await std::move(c);
}

loop::Coroutine<std::shared_ptr<loop::Server>> plain_server(loop::EventLoop& lp, Factory factory) {
  auto c = lp.create_server(std::move(factory), kHost, 0);
  co_return co_await std::move(c);
}

int port_of(const std::shared_ptr<loop::Server>& srv) {
  return srv->sockets().at(0).port();
}

loop::Coroutine<void> stop(std::shared_ptr<loop::Server> srv) {
  srv->close();
  co_await srv->wait_closed();
}

// create_connection with ssl (ctx null: plain) for a protocol made beforehand.
loop::Coroutine<Conn> connect(loop::EventLoop& lp, int port, RecPtr p, Ctx ctx,
                              std::optional<std::string> hostname = "localhost",
                              std::optional<double> handshake_timeout = std::nullopt) {
  loop::ConnectionOptions o;
  if (ctx) {
    o.ssl = ctx;
    o.server_hostname = hostname;
    o.ssl_handshake_timeout = handshake_timeout;
  }
  auto c = lp.create_connection([p] { return p; }, kHost, port, o);
  co_return co_await std::move(c);
}

loop::Coroutine<void> wait_until(std::function<bool()> cond, double timeout = 3.0) {
  for (int i = 0; i < static_cast<int>(timeout / 0.005); ++i) {
    if (cond()) co_return;
    AWAIT(loop::sleep(0.005));
  }
  throw std::runtime_error("wait_until timed out");
}

loop::Coroutine<void> wait_lost(RecPtr p) {
  auto f = p->lost;
  co_await f;
}

// A TLS server with one protocol (from make) per connection and a Rec client connected to it.
struct Pair {
  std::shared_ptr<loop::Server> srv;
  int port = 0;
  std::vector<RecPtr> sp;
  std::shared_ptr<loop::Transport> t;
  RecPtr p;
};

using MakeRec = std::function<RecPtr(loop::EventLoop&, Log*)>;

loop::Coroutine<void> connect_pair(loop::EventLoop& lp, Pair& out, Log* slog, Log* clog,
                                   MakeRec make = {}) {
  auto* pair = &out;
  auto s = tls_server(lp, [&lp, pair, slog, make]() -> std::shared_ptr<loop::Protocol> {
    RecPtr p = make ? make(lp, slog) : std::make_shared<Rec>(lp, slog);
    pair->sp.push_back(p);
    return p;
  });
  out.srv = co_await std::move(s);
  out.port = port_of(out.srv);
  auto c = connect(lp, out.port, std::make_shared<Rec>(lp, clog), client_ctx());
  auto conn = co_await std::move(c);
  out.t = conn.first;
  out.p = conn.second;
}

}  // namespace

// ---- Handshake and the order of callbacks ----------------------------------------------------

// The server's protocol exists from the accept on; its connection_made waits for the
// client's Finished, which the client sends after its own connection_made.
SCENARIO(factory_then_client_connection_made_then_server_connection_made) {
  Log log("log");
  Log s("s"), c("c");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::vector<RecPtr> sp;
    auto sc = tls_server(lp, [&]() -> std::shared_ptr<loop::Protocol> {
      log("server factory");
      auto p = std::make_shared<Rec>(lp, &s);
      p->on_made = [&](Rec&, loop::Transport&) { log("server connection_made"); };
      sp.push_back(p);
      return p;
    });
    auto srv = co_await std::move(sc);
    auto cp = std::make_shared<Rec>(lp, &c);
    cp->on_made = [&](Rec&, loop::Transport&) { log("client connection_made"); };
    auto cc = connect(lp, port_of(srv), cp, client_ctx());
    auto [t, p] = co_await std::move(cc);
    log("create_connection returned");
    AWAIT(wait_until([&] {
      return std::find(log.lines.begin(), log.lines.end(), "server connection_made") !=
             log.lines.end();
    }));
    t->close();
    AWAIT(wait_lost(cp));
    AWAIT(stop(srv));
  });
  log.show();
}

SCENARIO(create_connection_returns_the_connected_pair) {
  Log clog("client"), s("s");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto sc = tls_server(
        lp, [&]() -> std::shared_ptr<loop::Protocol> { return std::make_shared<Rec>(lp, &s); });
    auto srv = co_await std::move(sc);
    std::vector<loop::Transport*> made;
    auto cp = std::make_shared<Rec>(lp, &clog);
    cp->on_made = [&](Rec&, loop::Transport& t) { made.push_back(&t); };
    auto cc = connect(lp, port_of(srv), cp, client_ctx());
    auto [t, p] = co_await std::move(cc);
    clog("returned; same transport as connection_made's:", t.get() == made.at(0));
    clog("get_protocol is the protocol:", t->get_protocol() == p);
    clog("is_closing:", t->is_closing());
    p->close();
    clog("is_closing after close:", t->is_closing());
    AWAIT(wait_lost(p));
    AWAIT(stop(srv));
  });
  clog.show();
}

SCENARIO(extra_info_is_ready_in_connection_made) {
  Log slog("server"), clog("client");
  auto report = [](Log& log, Ctx ctx) {
    return [&log, ctx](Rec&, loop::Transport& t) {
      auto cert = peercert(t);
      log("peercert:", cert.is_null() ? std::string("None") : cn(cert));
      auto cipher = t.extra<loop::CipherInfo>("cipher");
      log("cipher:", cipher.has_value(), cipher ? cipher->protocol : std::string("-"));
      log("ssl_object present:", t.extra<SSL*>("ssl_object").value_or(nullptr) != nullptr);
      auto comp = t.extra<std::optional<std::string>>("compression");
      log("compression:", comp && *comp ? **comp : std::string("None"));
      log("sslcontext is ours:", t.extra<Ctx>("sslcontext").value_or(nullptr) == ctx);
    };
  };
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Ctx sctx = server_ctx(), cctx = client_ctx();
    auto sc = tls_server(
        lp,
        [&]() -> std::shared_ptr<loop::Protocol> {
          auto p = std::make_shared<Rec>(lp, &slog);
          p->on_made = report(slog, sctx);
          return p;
        },
        sctx);
    auto srv = co_await std::move(sc);
    auto cp = std::make_shared<Rec>(lp, &clog);
    cp->on_made = report(clog, cctx);
    auto cc = connect(lp, port_of(srv), cp, cctx);
    auto [t, p] = co_await std::move(cc);
    AWAIT(wait_until([&] { return slog.lines.size() > 1; }));
    p->close();
    AWAIT(wait_lost(p));
    AWAIT(stop(srv));
  });
  clog.show();
  slog.show();
}

SCENARIO(writes_in_connection_made_on_both_sides) {
  Log slog("server"), clog("client");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::vector<RecPtr> sp;
    auto sc = tls_server(lp, [&]() -> std::shared_ptr<loop::Protocol> {
      auto p = std::make_shared<Rec>(lp, &slog);
      p->on_made = [](Rec&, loop::Transport& t) { t.write("hello from server"); };
      p->on_data = [](Rec& self, std::string_view) {
        if (self.received == "hello from client") {
          (*self.log)("got", self.received);
          self.close();
        }
      };
      sp.push_back(p);
      return p;
    });
    auto srv = co_await std::move(sc);
    auto cp = std::make_shared<Rec>(lp, &clog);
    cp->on_made = [](Rec&, loop::Transport& t) { t.write("hello from client"); };
    auto cc = connect(lp, port_of(srv), cp, client_ctx());
    auto [t, p] = co_await std::move(cc);
    AWAIT(wait_lost(p));
    AWAIT(wait_lost(sp.at(0)));
    clog("received", p->received);
    AWAIT(stop(srv));
  });
  clog.show();
  slog.show();
}

SCENARIO(echo_roundtrips_keep_their_order) {
  Log s("s"), clog("client");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Pair pr;
    auto cp = connect_pair(lp, pr, &s, &clog, [](loop::EventLoop& l, Log* log) {
      auto p = std::make_shared<Rec>(l, log);
      p->on_data = [](Rec& self, std::string_view d) { self.t->write("[" + std::string(d) + "]"); };
      return p;
    });
    co_await std::move(cp);
    for (int i = 0; i < 5; ++i) {
      std::string m = "m" + std::to_string(i);
      pr.t->write(m);
      auto w = wait_until([&] {
        const auto& r = pr.p->received;
        return r.size() >= m.size() + 2 &&
               r.compare(r.size() - m.size() - 2, std::string::npos, "[" + m + "]") == 0;
      });
      co_await std::move(w);
    }
    clog("received", pr.p->received);
    pr.p->close();
    AWAIT(wait_lost(pr.p));
    AWAIT(stop(pr.srv));
  });
  clog.show();
}

// ---- Closing ---------------------------------------------------------------------------------

namespace {

void clean_close(bool closer_is_client) {
  Log slog("server"), clog("client");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::vector<RecPtr> sp;
    auto sc = tls_server(lp, [&]() -> std::shared_ptr<loop::Protocol> {
      auto p = std::make_shared<Rec>(lp, &slog, false, true);
      sp.push_back(p);
      return p;
    });
    auto srv = co_await std::move(sc);
    auto cc =
        connect(lp, port_of(srv), std::make_shared<Rec>(lp, &clog, false, true), client_ctx());
    auto [t, p] = co_await std::move(cc);
    t->write("x");
    AWAIT(wait_until([&] { return !sp.empty() && sp[0]->received == "x"; }));
    RecPtr closer = closer_is_client ? p : sp[0];
    (*closer->log)("close()");
    closer->close();
    AWAIT(wait_lost(p));
    AWAIT(wait_lost(sp[0]));
    AWAIT(stop(srv));
  });
  clog.show();
  slog.show();
}

}  // namespace

// close_notify both ways. asyncio 3.11 calls eof_received on both sides (the closer's when the
// peer's close_notify answers its own, before it closes); 3.7 on the closer only, for the TCP
// EOF behind the answer.
SCENARIO(clean_close_by_client) {
  clean_close(true);
}

SCENARIO(clean_close_by_server) {
  clean_close(false);
}

SCENARIO(close_flushes_writes_before_close_notify) {
  Log slog("server"), clog("client");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Pair pr;
    auto cp = connect_pair(lp, pr, &slog, &clog, [](loop::EventLoop& l, Log* log) {
      auto p = std::make_shared<Rec>(l, log);
      p->on_made = [](Rec& self, loop::Transport& t) {
        t.write("one,");
        t.write("two,");
        t.writelines({"three"});
        self.close();
        (*self.log)("is_closing", t.is_closing());
        t.write("dropped");  // after close(): silently dropped
        (*self.log)("write after close raised nothing");
      };
      return p;
    });
    co_await std::move(cp);
    AWAIT(wait_lost(pr.p));
    AWAIT(wait_lost(pr.sp.at(0)));
    clog("received", pr.p->received);
    slog.show();
    AWAIT(stop(pr.srv));
  });
  clog.show();
}

SCENARIO(abort_reaches_the_peer_as_eof_without_close_notify) {
  Log slog("server"), clog("client");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Pair pr;
    auto cp = connect_pair(lp, pr, &slog, &clog, [](loop::EventLoop& l, Log* log) {
      auto p = std::make_shared<Rec>(l, log);
      p->on_data = [](Rec& self, std::string_view d) { self.t->write(d); };
      return p;
    });
    co_await std::move(cp);
    pr.t->write("ping");
    AWAIT(wait_until([&] { return pr.p->received == "ping"; }));
    clog("abort()");
    pr.t->abort();
    clog("is_closing", pr.t->is_closing());
    AWAIT(wait_lost(pr.p));
    AWAIT(wait_lost(pr.sp.at(0)));
    AWAIT(stop(pr.srv));
  });
  clog.show();
  slog.show();
}

// The peer shuts its socket's write side: TCP EOF, no close_notify. Returning true from
// eof_received cannot keep a TLS connection half-open (asyncio logs a warning).
SCENARIO(eof_received_true_without_close_notify_still_closes) {
  Log slog("server"), clog("client");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::vector<RecPtr> sp;
    auto sc = tls_server(lp, [&]() -> std::shared_ptr<loop::Protocol> {
      auto p = std::make_shared<Rec>(lp, &slog, true);
      sp.push_back(p);
      return p;
    });
    auto srv = co_await std::move(sc);
    auto cc = connect(lp, port_of(srv), std::make_shared<Rec>(lp, &clog), client_ctx());
    auto [t, p] = co_await std::move(cc);
    t->write("before eof");
    AWAIT(wait_until([&] { return !sp.empty() && sp[0]->received == "before eof"; }));
    ::shutdown(t->extra<int>("socket").value(), SHUT_WR);
    AWAIT(wait_lost(sp[0]));
    AWAIT(wait_lost(p));
    AWAIT(stop(srv));
  });
  clog.show();
  slog.show();
}

SCENARIO(write_after_connection_lost_is_dropped) {
  Log s("s"), clog("client");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Pair pr;
    auto cp = connect_pair(lp, pr, &s, &clog);
    co_await std::move(cp);
    AWAIT(wait_until([&] { return !pr.sp.empty() && pr.sp[0]->t != nullptr; }));
    pr.sp[0]->close();
    AWAIT(wait_lost(pr.p));
    pr.t->write("late");
    clog("write after connection_lost raised nothing");
    AWAIT(wait_lost(pr.sp[0]));
    AWAIT(stop(pr.srv));
  });
  clog.show();
}

// ---- Extra info --------------------------------------------------------------------------------

SCENARIO(peercert_fields_seen_by_the_client) {
  Log s("s"), clog("client");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Pair pr;
    auto cp = connect_pair(lp, pr, &s, &clog);
    co_await std::move(cp);
    auto cert = peercert(*pr.t);
    clog("subject CN", cn(cert), "issuer CN", cn(cert, "issuer"));
    clog("subject", pyrepr(cert["subject"]));
    clog("subjectAltName", pyrepr(cert["subjectAltName"]));
    clog("version", cert["version"].dump());
    std::vector<std::string> has;
    for (const char* k : {"notAfter", "notBefore", "serialNumber"})
      if (cert.contains(k)) has.push_back(k);
    clog("has", pyrepr(has));
    pr.p->close();
    AWAIT(wait_lost(pr.p));
    AWAIT(stop(pr.srv));
  });
  clog.show();
}

SCENARIO(mutual_tls_client_certificate_reaches_the_server) {
  Log slog("server"), c("c");
  const auto& certs = TestCerts::get();
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto sctx = server_ctx();
    sctx->set_verify_mode(loop::VerifyMode::cert_required);
    sctx->load_verify_locations(certs.ca_cert);
    auto cctx = client_ctx();
    cctx->load_cert_chain(certs.client_cert, certs.client_key);
    auto sc = tls_server(
        lp,
        [&]() -> std::shared_ptr<loop::Protocol> {
          auto p = std::make_shared<Rec>(lp, &slog);
          p->on_made = [&](Rec&, loop::Transport& t) {
            auto cert = peercert(t);
            slog("peercert subject CN", cn(cert), "issuer CN", cn(cert, "issuer"));
          };
          return p;
        },
        sctx);
    auto srv = co_await std::move(sc);
    auto cc = connect(lp, port_of(srv), std::make_shared<Rec>(lp, &c), cctx);
    auto [t, p] = co_await std::move(cc);
    AWAIT(wait_until([&] { return slog.lines.size() >= 2; }));
    p->close();
    AWAIT(wait_lost(p));
    AWAIT(stop(srv));
  });
  slog.show();
}

SCENARIO(server_without_client_certificate_has_peercert_none) {
  Log slog("server"), c("c");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto sc = tls_server(lp, [&]() -> std::shared_ptr<loop::Protocol> {
      auto p = std::make_shared<Rec>(lp, &slog);
      p->on_made = [&](Rec&, loop::Transport& t) { slog("peercert", pyrepr(peercert(t))); };
      return p;
    });
    auto srv = co_await std::move(sc);
    auto cc = connect(lp, port_of(srv), std::make_shared<Rec>(lp, &c), client_ctx());
    auto [t, p] = co_await std::move(cc);
    AWAIT(wait_until([&] { return slog.lines.size() >= 2; }));
    p->close();
    AWAIT(wait_lost(p));
    AWAIT(stop(srv));
  });
  slog.show();
}

SCENARIO(extra_info_after_connection_lost) {
  Log s("s"), clog("client");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Pair pr;
    auto cp = connect_pair(lp, pr, &s, &clog);
    co_await std::move(cp);
    auto& t = *pr.t;
    clog("before: peername port matches",
         t.extra<loop::SocketAddress>("peername").value().port() == pr.port);
    pr.p->close();
    AWAIT(wait_lost(pr.p));
    clog("after: peercert CN", cn(peercert(t)));
    clog("after: cipher present", t.extra<loop::CipherInfo>("cipher").has_value());
    clog("after: ssl_object present", t.extra<SSL*>("ssl_object").value_or(nullptr) != nullptr);
    clog("after: sslcontext present", t.extra<Ctx>("sslcontext").value_or(nullptr) != nullptr);
    auto peername = t.get_extra_info("peername", std::string("DEFAULT"));
    auto* pn = std::any_cast<std::string>(&peername);
    clog("after: peername", pn ? *pn : std::string("(not the default)"));
    auto sock = t.get_extra_info("socket", std::string("DEFAULT"));
    auto* sk = std::any_cast<std::string>(&sock);
    clog("after: socket", sk ? *sk : std::string("(not the default)"));
    AWAIT(stop(pr.srv));
  });
  clog.show();
}

// ---- Handshake failures --------------------------------------------------------------------

namespace {

void failed_connect(std::function<Ctx()> ctx_fn, std::optional<std::string> server_hostname,
                    const std::string& server_name = "server", bool debug = false,
                    const std::string& next_ca = "ca",
                    const std::string& next_hostname = "localhost") {
  Log log("log"), s("s"), c("c"), c2("c2");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::vector<std::pair<std::string, std::string>> handler_calls;
    lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& ctx) {
      handler_calls.emplace_back(ctx.message, os_error(ctx.exception));
    });
    lp.set_debug(debug);
    int made = 0;
    auto sc = tls_server(
        lp,
        [&]() -> std::shared_ptr<loop::Protocol> {
          log("server factory");
          auto p = std::make_shared<Rec>(lp, &s);
          p->on_made = [&](Rec&, loop::Transport&) { ++made; };
          return p;
        },
        server_ctx(server_name));
    auto srv = co_await std::move(sc);
    int port = port_of(srv);
    auto cp = std::make_shared<Rec>(lp, &c);
    std::exception_ptr err;
    try {
      auto cc = connect(lp, port, cp, ctx_fn(), server_hostname);
      co_await std::move(cc);
      log("connected?!");
    } catch (...) {
      err = std::current_exception();
    }
    if (err) {
      log("client:", ename(err), "is SSLError", is_ssl_error(err));
      try {
        std::rethrow_exception(err);
      } catch (const loop::SSLCertVerificationError& e) {
        log("verify_code", e.verify_code);
        log("verify_message", e.verify_message);
      } catch (...) {
        log("verify_code", nullptr);
        log("verify_message", nullptr);
      }
      log("client protocol events", c.joined());
    }
    AWAIT(loop::sleep(0.1));  // the server's side of the failure
    log("server connection_made calls", made);
    if (debug) {
      for (auto& [message, exc] : handler_calls) log("handler:", message, exc);
    } else {
      log("handler calls", handler_calls.size());
    }
    // The server goes on serving.
    auto cc2 =
        connect(lp, port, std::make_shared<Rec>(lp, &c2), client_ctx(next_ca), next_hostname);
    auto [t, p] = co_await std::move(cc2);
    log("next client connected");
    p->close();
    AWAIT(wait_lost(p));
    AWAIT(stop(srv));
  });
  log.show();
}

}  // namespace

SCENARIO(untrusted_certificate_fails_the_client_handshake) {
  failed_connect([] { return client_ctx("unknown_ca"); }, "localhost");
}

SCENARIO(hostname_mismatch_fails_the_client_handshake) {
  failed_connect([] { return client_ctx(); }, "wrong.example");
}

// server_hostname defaults to the host, an IP address the certificate does not name.
SCENARIO(ip_address_mismatch_fails_the_client_handshake) {
  failed_connect([] { return client_ctx("unknown_ca"); }, std::nullopt, "other", false,
                 "unknown_ca", "other.example");
}

// The handler's exception: the client's alert on libloop (SSLError), a reset on asyncio.
SCENARIO(untrusted_certificate_what_the_server_sees_in_debug_mode) {
  failed_connect([] { return client_ctx("unknown_ca"); }, "localhost", "server", true);
}

// asyncio's docs: server_hostname="" disables hostname matching.
SCENARIO(empty_server_hostname_with_a_hostname_checking_context) {
  Log log("log"), s("s"), c("c");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto sc = tls_server(
        lp, [&]() -> std::shared_ptr<loop::Protocol> { return std::make_shared<Rec>(lp, &s); },
        server_ctx("other"));
    auto srv = co_await std::move(sc);
    std::exception_ptr err;
    try {
      auto cc = connect(lp, port_of(srv), std::make_shared<Rec>(lp, &c), client_ctx("unknown_ca"),
                        std::string());
      auto [t, p] = co_await std::move(cc);
      log("connected, peer", cn(peercert(*t)));
      p->close();
      AWAIT(wait_lost(p));
    } catch (...) {
      err = std::current_exception();
    }
    if (err) log("refused:", ename(err));
    AWAIT(stop(srv));
  });
  log.show();
}

namespace {

// A Rec that logs that its connection ended, cleanly or by an OSError, not how.
struct EndRec : Rec {
  using Rec::Rec;
  bool eof_received() override { return false; }
  void connection_lost(std::exception_ptr e) override {
    (*log)("connection_lost; None or an OSError:", !e || is_os_error(e));
    if (!lost.done()) lost.set_result();
  }
};

}  // namespace

// TLS 1.3: the client's handshake is over before the server checks for its certificate.
// The server's alert (certificate required) ends the client's connection with an SSLError
// on libloop; asyncio drops it, the client sees an EOF: eof_received, connection_lost None.
SCENARIO(client_certificate_required_but_not_sent) {
  Log clog("client"), log("server"), s("s");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto sctx = server_ctx();
    sctx->set_verify_mode(loop::VerifyMode::cert_required);
    sctx->load_verify_locations(TestCerts::get().ca_cert);
    int made = 0;
    auto sc = tls_server(
        lp,
        [&]() -> std::shared_ptr<loop::Protocol> {
          log("factory");
          auto p = std::make_shared<Rec>(lp, &s);
          p->on_made = [&](Rec&, loop::Transport&) { ++made; };
          return p;
        },
        sctx);
    auto srv = co_await std::move(sc);
    auto cc = connect(lp, port_of(srv), std::make_shared<EndRec>(lp, &clog), client_ctx());
    auto [t, p] = co_await std::move(cc);
    AWAIT(wait_lost(p));
    log("connection_made calls", made);
    AWAIT(stop(srv));
  });
  clog.show();
  log.show();
}

SCENARIO(plaintext_client_to_tls_server) {
  Log clog("client"), s("s");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int made = 0;
    auto sc = tls_server(lp, [&]() -> std::shared_ptr<loop::Protocol> {
      auto p = std::make_shared<Rec>(lp, &s);
      p->on_made = [&](Rec&, loop::Transport&) { ++made; };
      return p;
    });
    auto srv = co_await std::move(sc);
    auto cc = connect(lp, port_of(srv), std::make_shared<Rec>(lp, &clog), nullptr);
    auto [t, p] = co_await std::move(cc);
    t->write("GET / HTTP/1.0\r\n\r\n");
    AWAIT(wait_lost(p));
    clog("received", repr(p->received));
    clog("server connection_made calls", made);
    AWAIT(stop(srv));
  });
  clog.show();
}

SCENARIO(handshake_timeout_on_the_client) {
  Log slog("plain server"), log("client"), c("c");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::vector<RecPtr> sp;
    auto sc = plain_server(lp, [&]() -> std::shared_ptr<loop::Protocol> {
      sp.push_back(std::make_shared<Rec>(lp, &slog));
      return sp.back();
    });
    auto srv = co_await std::move(sc);
    double t0 = lp.time();
    std::exception_ptr err;
    try {
      auto cc =
          connect(lp, port_of(srv), std::make_shared<Rec>(lp, &c), client_ctx(), "localhost", 0.2);
      co_await std::move(cc);
    } catch (...) {
      err = std::current_exception();
    }
    std::string what;
    try {
      if (err) std::rethrow_exception(err);
    } catch (const std::exception& e) {
      what = e.what();
    }
    log(ename(err),
        what.rfind("SSL handshake is taking longer than 0.2 seconds: aborting the connection", 0) ==
            0);
    log("took at least 0.2 s", lp.time() - t0 >= 0.19);
    AWAIT(wait_lost(sp.at(0)));
    AWAIT(stop(srv));
  });
  log.show();
  slog.show();
}

SCENARIO(handshake_timeout_on_the_server) {
  Log clog("plain client"), log("server"), s("s");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int made = 0;
    auto sc = tls_server(
        lp,
        [&]() -> std::shared_ptr<loop::Protocol> {
          log("factory");
          auto p = std::make_shared<Rec>(lp, &s);
          p->on_made = [&](Rec&, loop::Transport&) { ++made; };
          return p;
        },
        nullptr, 0.2);
    auto srv = co_await std::move(sc);
    double t0 = lp.time();
    auto cc = connect(lp, port_of(srv), std::make_shared<Rec>(lp, &clog), nullptr);
    auto [t, p] = co_await std::move(cc);
    AWAIT(wait_lost(p));
    clog("lost after at least 0.2 s", lp.time() - t0 >= 0.19);
    log("connection_made calls", made);
    AWAIT(stop(srv));
  });
  clog.show();
  log.show();
}

// ---- start_tls -----------------------------------------------------------------------------

namespace {

// Plain until "STARTTLS\n", answers "OK\n" and upgrades (server side).
struct StartTLSServer : Rec {
  loop::EventLoop& lp;
  double delay;
  std::shared_ptr<loop::Transport> old;  // the plain transport, kept for after the upgrade
  std::shared_ptr<loop::Transport> tls;
  std::weak_ptr<StartTLSServer> self;
  std::exception_ptr error;
  loop::Future<void> upgraded;

  StartTLSServer(loop::EventLoop& l, Log* log, double d)
      : Rec(l, log), lp(l), delay(d), upgraded(l.create_future<void>()) {}

  void connection_made(loop::BaseTransport& tr) override {
    Rec::connection_made(tr);
    old = std::dynamic_pointer_cast<loop::Transport>(tr.shared_transport());
  }
  void data_received(std::string_view d) override {
    Rec::data_received(d);
    if (!tls && received == "STARTTLS\n") {
      (*log)("plain:", repr(received));
      received.clear();
      if (delay > 0) t->pause_reading();  // what follows is TLS: keep it in the socket
      t->write("OK\n");
      lp.create_task(upgrade(self.lock()));
    } else if (tls && received == "tls ping") {
      (*log)("tls:", received);
      tls->write("tls pong");
    }
  }
  static loop::Coroutine<void> upgrade(std::shared_ptr<StartTLSServer> me) {
    if (me->delay > 0) co_await loop::sleep(me->delay);
    std::exception_ptr err;
    try {
      auto u = me->lp.start_tls(me->old, me, server_ctx(), true);
      me->tls = co_await std::move(u);
    } catch (...) {
      err = std::current_exception();
    }
    if (err) {
      me->error = err;
      me->upgraded.set_result();
      co_return;
    }
    (*me->log)("upgraded; new transport:", me->tls != me->old,
               "get_protocol is us:", me->tls->get_protocol() == me,
               "cipher:", me->tls->extra<loop::CipherInfo>("cipher").value().protocol);
    me->upgraded.set_result();
  }
};

void start_tls_scenario(double delay, const std::string& client_ca) {
  Log slog("server"), clog("client");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::vector<std::shared_ptr<StartTLSServer>> sp;
    auto sc = plain_server(lp, [&]() -> std::shared_ptr<loop::Protocol> {
      auto p = std::make_shared<StartTLSServer>(lp, &slog, delay);
      p->self = p;
      sp.push_back(p);
      return p;
    });
    auto srv = co_await std::move(sc);
    auto cc = connect(lp, port_of(srv), std::make_shared<Rec>(lp, &clog), nullptr);
    auto [t, p] = co_await std::move(cc);
    t->write("STARTTLS\n");
    AWAIT(wait_until([&, p = p] { return p->received == "OK\n"; }));
    clog("plain:", repr(p->received));
    p->received.clear();
    std::shared_ptr<loop::Transport> tls;
    std::exception_ptr err;
    try {
      auto u = lp.start_tls(t, p, client_ctx(client_ca), false, "localhost");
      tls = co_await std::move(u);
    } catch (...) {
      err = std::current_exception();
    }
    if (err) {
      // Whether the protocol then hears connection_lost differs: 3.11 calls it with the
      // error, 3.7 does not (its SSLProtocol never established a session). Not printed.
      Log res("result");
      res("client start_tls:", ename(err), "old transport closing:", t->is_closing());
      auto up = sp.at(0)->upgraded;
      co_await up;
      auto serr = sp[0]->error;
      res("server start_tls:", serr ? "failed with" : "succeeded", os_error(serr));
      AWAIT(loop::sleep(0.05));
      res("server transport closing:", sp[0]->old->is_closing());
      AWAIT(stop(srv));
      res.show();
      co_return;
    }
    clog("upgraded; new transport:", tls != t, "get_protocol is us:", tls->get_protocol() == p,
         "peer CN:", cn(peercert(*tls)));
    auto up = sp.at(0)->upgraded;
    co_await up;
    tls->write("tls ping");
    AWAIT(wait_until([&, p = p] { return p->received == "tls pong"; }));
    clog("tls:", p->received);
    p->close(*tls);
    AWAIT(wait_lost(p));
    AWAIT(wait_lost(sp[0]));
    AWAIT(stop(srv));
  });
  if (client_ca == "ca") {
    clog.show();
    slog.show();
  }
}

}  // namespace

SCENARIO(start_tls_on_both_sides_of_a_plain_connection) {
  start_tls_scenario(0.0, "ca");
}

// The server pauses reading and upgrades 0.2 s later: the ClientHello waits in its socket.
SCENARIO(start_tls_with_the_client_hello_already_waiting) {
  start_tls_scenario(0.2, "ca");
}

// The server's start_tls fails on the client's alert (unknown ca): an SSLError on libloop,
// a ConnectionResetError on asyncio, which drops the alert; both OSErrors.
SCENARIO(start_tls_handshake_failure) {
  start_tls_scenario(0.0, "unknown_ca");
}

// ---- Streams ---------------------------------------------------------------------------------

SCENARIO(streams_over_tls) {
  Log log("log");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handler = [&](std::shared_ptr<loop::StreamReader> r,
                       std::shared_ptr<loop::StreamWriter> w) -> loop::Coroutine<void> {
      std::string line = co_await r->readline();
      log("server read", repr(line));
      std::string up = line;
      for (auto& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      w->write(up);
      co_await w->drain();
      std::string rest = co_await r->read();
      log("server read to eof", repr(rest), "at_eof", r->at_eof());
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    loop::ServerOptions so;
    so.ssl = server_ctx();
    auto sc = loop::start_server(handler, kHost, 0, so);
    auto srv = co_await std::move(sc);
    loop::ConnectionOptions o;
    o.ssl = client_ctx();
    o.server_hostname = "localhost";
    auto oc = loop::open_connection(kHost, port_of(srv), o);
    auto [r, w] = co_await std::move(oc);
    auto cert = std::any_cast<nlohmann::json>(w->get_extra_info("peercert"));
    log("client peer CN", cn(cert));
    w->write("hello tls\n");
    std::string line = co_await r->readline();
    log("client readline", repr(line));
    w->write("last words");
    w->close();
    co_await w->wait_closed();
    log("client closed");
    auto d = done;
    co_await d;
    std::string after = co_await r->read();
    log("client read after close", repr(after), "at_eof", r->at_eof());
    AWAIT(stop(srv));
  });
  log.show();
}

SCENARIO(streams_readexactly_short_over_tls) {
  Log log("log");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    (void)lp;
    auto handler = [](std::shared_ptr<loop::StreamReader>,
                      std::shared_ptr<loop::StreamWriter> w) -> loop::Coroutine<void> {
      w->write("abc");
      w->close();
      co_return;
    };
    loop::ServerOptions so;
    so.ssl = server_ctx();
    auto sc = loop::start_server(handler, kHost, 0, so);
    auto srv = co_await std::move(sc);
    loop::ConnectionOptions o;
    o.ssl = client_ctx();
    o.server_hostname = "localhost";
    auto oc = loop::open_connection(kHost, port_of(srv), o);
    auto [r, w] = co_await std::move(oc);
    try {
      co_await r->readexactly(10);
    } catch (const loop::IncompleteReadError& e) {
      log("IncompleteReadError", "partial", repr(e.partial), "expected",
          e.expected ? static_cast<long>(*e.expected) : -1L);
    }
    log("at_eof", r->at_eof());
    w->close();
    co_await w->wait_closed();
    AWAIT(stop(srv));
  });
  log.show();
}

// ---- Reading flow, protocols -----------------------------------------------------------------

SCENARIO(pause_reading_holds_decrypted_data_back) {
  Log s("s"), clog("client");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Pair pr;
    auto cp = connect_pair(lp, pr, &s, &clog);
    co_await std::move(cp);
    AWAIT(wait_until([&] { return !pr.sp.empty() && pr.sp[0]->t != nullptr; }));
    pr.t->pause_reading();
    clog("is_reading", pr.t->is_reading());
    pr.sp[0]->t->write("while paused");
    AWAIT(loop::sleep(0.2));
    clog("received while paused", repr(pr.p->received));
    pr.t->resume_reading();
    clog("is_reading", pr.t->is_reading());
    AWAIT(wait_until([&] { return pr.p->received == "while paused"; }));
    clog("received", repr(pr.p->received));
    pr.p->close();
    AWAIT(wait_lost(pr.p));
    AWAIT(stop(pr.srv));
  });
  clog.show();
}

SCENARIO(set_protocol_switches_the_receiver) {
  Log log("log"), second_log("second"), c("c");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto second = std::make_shared<Rec>(lp, &second_log);
    second->on_data = [&](Rec&, std::string_view d) { log("second got", std::string(d)); };
    auto sc = tls_server(lp, [&]() -> std::shared_ptr<loop::Protocol> {
      auto p = std::make_shared<Rec>(lp, &log);
      p->on_data = [&](Rec& self, std::string_view d) {
        log("first got", std::string(d));
        self.t->set_protocol(second);
        log("get_protocol is second", self.t->get_protocol() == second);
      };
      return p;
    });
    auto srv = co_await std::move(sc);
    auto cc = connect(lp, port_of(srv), std::make_shared<Rec>(lp, &c), client_ctx());
    auto [t, p] = co_await std::move(cc);
    t->write("one");
    AWAIT(wait_until([&] { return log.lines.size() >= 3; }));
    t->write("two");
    AWAIT(wait_until([&] { return second->received == "two"; }));
    p->close();
    AWAIT(wait_lost(second));
    log("second's events", second_log.joined());
    AWAIT(stop(srv));
  });
  log.show();
}

namespace {

struct Buf : loop::BufferedProtocol {
  Log* log;
  char buf[4];  // small: a record takes several get_buffer calls
  std::string got;
  loop::Future<void> lost;
  Buf(loop::EventLoop& lp, Log* l) : log(l), lost(lp.create_future<void>()) {}
  void connection_made(loop::BaseTransport&) override { (*log)("connection_made"); }
  std::span<char> get_buffer(std::size_t) override { return {buf, sizeof buf}; }
  void buffer_updated(std::size_t n) override {
    if (log->lines.empty() || log->lines.back() != "buffer_updated") (*log)("buffer_updated");
    got.append(buf, n);
  }
  bool eof_received() override {
    (*log)("eof_received");
    return false;
  }
  void connection_lost(std::exception_ptr e) override {
    (*log)("connection_lost", ename(e), "got", repr(got));
    lost.set_result();
  }
};

}  // namespace

SCENARIO(buffered_protocol_over_tls) {
  Log log("server"), c("c");
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::vector<std::shared_ptr<Buf>> sp;
    auto sc = tls_server(lp, [&]() -> std::shared_ptr<loop::Protocol> {
      sp.push_back(std::make_shared<Buf>(lp, &log));
      return sp.back();
    });
    auto srv = co_await std::move(sc);
    auto cc = connect(lp, port_of(srv), std::make_shared<Rec>(lp, &c), client_ctx());
    auto [t, p] = co_await std::move(cc);
    t->write("0123456789abcdef");
    AWAIT(wait_until([&] { return !sp.empty() && sp[0]->got.size() == 16; }));
    p->close();
    auto f = sp[0]->lost;
    co_await f;
    AWAIT(wait_lost(p));
    AWAIT(stop(srv));
  });
  log.show();
}

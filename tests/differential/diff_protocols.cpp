// Differential scenarios of protocols and transports over real sockets and pipes (the asyncio
// half: diff_protocols.py).
//
// Events that two sides of a connection see are logged per side and printed at the end (server
// first): the order on one side is asyncio's promise, the interleaving of two sides is the
// kernel's.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <functional>
#include <loop/loop.hpp>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "scenario.hpp"

using diff::say;

namespace {

constexpr std::size_t kBig = 4 * 1024 * 1024;  // more than the socket buffers of a paused peer take

std::string exc_name(const std::exception_ptr& e) {
  if (!e) return "None";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return diff::exception_name(ex);
  } catch (...) {
    return "unknown";
  }
}

std::string limits(const std::pair<std::size_t, std::size_t>& l) {
  return "(" + std::to_string(l.first) + ", " + std::to_string(l.second) + ")";
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (auto& p : parts) out += (out.empty() ? "" : " ") + p;
  return out;
}

// The factories passed inside a co_await capture by reference (or are named first): a closure
// temporary holding a shared_ptr, in a co_await's operand, is destroyed twice by GCC 12 (the bug
// README.md warns of; ASan reports a use-after-free). What they capture outlives their calls.
template <class... Args>
std::string words(const Args&... args) {
  std::ostringstream line;
  bool first = true;
  ((line << (first ? "" : " "), diff::put(line, args), first = false), ...);
  return line.str();
}

void run(std::function<loop::Coroutine<void>(loop::EventLoop&)> body) {
  loop::EventLoop lp;
  lp.run_until_complete(body(lp));
  lp.close();
}

/// Logs every callback; data_received once per run of data (the chunking is the kernel's).
class Rec : public loop::Protocol {
 public:
  Rec(loop::EventLoop& lp, std::string n)
      : name(std::move(n)),
        made(lp.create_future<void>()),
        lost(lp.create_future<void>()),
        eof(lp.create_future<void>()) {}

  template <class... Args>
  void log(const Args&... args) {
    events.push_back(words(args...));
  }
  void connection_made(loop::BaseTransport& bt) override {
    base = &bt;
    t = std::dynamic_pointer_cast<loop::Transport>(bt.shared_transport());
    log("connection_made");
    if (on_made) on_made();
    made.set_result();
  }
  void data_received(std::string_view d) override {
    if (events.empty() || events.back() != "data_received") log("data_received");
    data.append(d);
    if (on_data) on_data(std::string(d));
  }
  bool eof_received() override {
    log("eof_received");
    if (!eof.done()) eof.set_result();
    if (on_eof) return on_eof();
    return eof_result;
  }
  void connection_lost(std::exception_ptr exc) override {
    log("connection_lost", exc_name(exc));
    lost.set_result();
  }
  void pause_writing() override { log("pause_writing"); }
  void resume_writing() override { log("resume_writing"); }
  bool has(const std::string& e) const {
    for (auto& x : events)
      if (x == e) return true;
    return false;
  }
  void dump() const {
    for (auto& e : events) say(name + ":", e);
  }

  std::string name;
  std::vector<std::string> events;
  std::string data;
  loop::BaseTransport* base = nullptr;
  std::shared_ptr<loop::Transport> t;
  loop::Future<void> made, lost, eof;
  bool eof_result = false;
  std::function<void()> on_made;
  std::function<void(std::string)> on_data;
  std::function<bool()> on_eof;
};

struct Setup {
  std::shared_ptr<loop::Server> srv;
  std::shared_ptr<Rec> sp, cp;
};

int server_port(const loop::Server& srv) {
  return srv.sockets().at(0).port();
}

/// A server on 127.0.0.1:0 and one connection.
loop::Coroutine<Setup> tcp_setup(loop::EventLoop& lp) {
  auto made = std::make_shared<std::vector<std::shared_ptr<Rec>>>();
  // Named (see above), and holding `made` weakly: the server outlives this frame, and a strong
  // reference would make a cycle (server -> factory -> protocol -> transport -> server).
  auto server_factory = [&lp, weak = std::weak_ptr(made)] {
    auto p = std::make_shared<Rec>(lp, "server");
    if (auto m = weak.lock()) m->push_back(p);
    return p;
  };
  auto srv = co_await lp.create_server(server_factory, "127.0.0.1", 0);
  int port = server_port(*srv);
  auto cp = std::make_shared<Rec>(lp, "client");
  auto conn1 = co_await lp.create_connection([&cp] { return cp; }, "127.0.0.1", port);
  while (made->empty()) co_await loop::sleep(0.001);
  auto sp = made->at(0);
  co_await sp->made;
  co_return Setup{srv, sp, cp};
}

loop::Coroutine<void> finish(loop::Server& srv, std::vector<std::shared_ptr<Rec>> protos) {
  for (auto& p : protos)
    if (p->t && !p->t->is_closing()) p->t->close();
  for (auto& p : protos) co_await p->lost;
  srv.close();
  co_await srv.wait_closed();
}

loop::Coroutine<void> close_server(loop::Server& srv) {
  srv.close();
  co_await srv.wait_closed();
}

}  // namespace

// ---- TCP: the order of the protocol methods -----------------------------------------------------

SCENARIO(tcp_echo_event_order) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto srv = s.srv;
    auto sp = s.sp;
    auto cp = s.cp;
    Rec* spp = sp.get();  // not a shared_ptr: the protocol would hold itself
    sp->on_data = [spp](std::string d) {
      for (auto& c : d) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      spp->t->write(d);
    };
    say("client reading", cp->t->is_reading(), "closing", cp->t->is_closing());
    cp->t->write("hello");
    while (cp->data != "HELLO") co_await loop::sleep(0.001);
    cp->t->write_eof();
    co_await sp->lost;
    co_await cp->lost;
    say("server got", sp->data, "client got", cp->data);
    sp->dump();
    cp->dump();
    co_await close_server(*srv);
  });
}

SCENARIO(tcp_eof_received_true_keeps_half_open) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    Rec* spr = sp.get();
    sp->on_eof = [spr, &lp] {
      spr->log("after eof: closing", spr->t->is_closing(), "reading", spr->t->is_reading());
      lp.call_soon([spr] {
        spr->log("writing reply, closing", spr->t->is_closing());
        spr->t->write("bye");
        spr->t->close();
      });
      return true;
    };
    cp->t->write("req");
    cp->t->write_eof();
    co_await cp->lost;
    co_await sp->lost;
    say("client got", cp->data, "server got", sp->data);
    sp->dump();
    cp->dump();
    co_await close_server(*s.srv);
  });
}

SCENARIO(tcp_eof_received_false_closes_and_drops_writes) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    Rec* spr = sp.get();
    sp->on_eof = [spr, &lp] {
      lp.call_soon([spr] {
        spr->log("closing", spr->t->is_closing(), "reading", spr->t->is_reading());
        spr->t->write("dropped");
        spr->log("write after the close: buffered", spr->t->get_write_buffer_size());
      });
      return false;
    };
    cp->t->write_eof();
    co_await sp->lost;
    co_await cp->lost;
    say("client got", "'" + cp->data + "'");
    sp->dump();
    cp->dump();
    co_await close_server(*s.srv);
  });
}

SCENARIO(tcp_write_after_close_is_ignored) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    cp->t->write("one");
    cp->t->close();
    say("closing", cp->t->is_closing(), "reading", cp->t->is_reading());
    cp->t->write("two");
    cp->t->writelines({"three", "four"});
    say("buffered", cp->t->get_write_buffer_size());
    cp->t->close();  // twice: nothing more
    co_await cp->lost;
    co_await sp->lost;
    say("server got", sp->data);
    sp->dump();
    cp->dump();
    co_await close_server(*s.srv);
  });
}

SCENARIO(tcp_write_after_write_eof_raises) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    say("can_write_eof", cp->t->can_write_eof());
    cp->t->write("ping");
    cp->t->write_eof();
    cp->t->write_eof();  // twice: nothing more
    try {
      cp->t->write("x");
    } catch (const std::exception& e) {
      say("write after write_eof:", diff::exception_name(e), e.what());
    }
    try {
      cp->t->write("");
      say("empty write after write_eof: accepted");
    } catch (const std::exception& e) {
      say("empty write after write_eof:", diff::exception_name(e));
    }
    say("closing", cp->t->is_closing());
    Rec* spr = sp.get();
    sp->on_eof = [spr] {
      spr->t->write("pong");
      spr->t->close();
      return true;
    };
    co_await cp->lost;
    co_await sp->lost;
    say("server got", sp->data, "client got", cp->data);
    sp->dump();
    cp->dump();
    co_await close_server(*s.srv);
  });
}

// ---- TCP: closing with data buffered
// --------------------------------------------------------------

namespace {
/// The server stops reading; the client writes kBig bytes, most of which stay buffered.
loop::Coroutine<void> fill_while_peer_paused(Rec& sp, Rec& cp) {
  sp.t->pause_reading();
  cp.t->set_write_buffer_limits(std::size_t(1) << 30);
  std::string big(kBig, 'x');
  cp.t->write(big);
  co_await loop::sleep(0.05);  // the kernel buffers fill; what is left stays in the transport
  say("buffered after the write", cp.t->get_write_buffer_size() > 0);
}
}  // namespace

SCENARIO(tcp_close_flushes_buffer_then_connection_lost) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    co_await fill_while_peer_paused(*sp, *cp);
    cp->t->close();
    say("closing", cp->t->is_closing(), "still buffered", cp->t->get_write_buffer_size() > 0);
    cp->t->write("tail");  // accepted while the buffer drains
    co_await loop::sleep(0.02);
    say("connection_lost yet", cp->lost.done());
    sp->t->resume_reading();
    co_await cp->lost;
    say("buffered at connection_lost", cp->t->get_write_buffer_size());
    co_await sp->lost;
    say("server got", sp->data.size(), "ends with", sp->data.substr(sp->data.size() - 6));
    sp->dump();
    cp->dump();
    co_await close_server(*s.srv);
  });
}

SCENARIO(tcp_abort_discards_buffer) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    co_await fill_while_peer_paused(*sp, *cp);
    cp->t->abort();
    say("closing", cp->t->is_closing(), "buffered", cp->t->get_write_buffer_size());
    say("connection_lost at once", cp->lost.done());
    co_await cp->lost;
    sp->t->resume_reading();
    co_await sp->lost;
    say("server got less", sp->data.size() < kBig);
    sp->dump();
    cp->dump();
    co_await close_server(*s.srv);
  });
}

SCENARIO(tcp_close_then_abort_with_buffer) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    co_await fill_while_peer_paused(*sp, *cp);
    cp->t->close();
    cp->t->abort();
    cp->t->abort();
    say("buffered", cp->t->get_write_buffer_size());
    co_await cp->lost;
    co_await loop::sleep(0.01);
    sp->t->resume_reading();
    co_await sp->lost;
    say("server got less", sp->data.size() < kBig);
    sp->dump();
    cp->dump();
    co_await close_server(*s.srv);
  });
}

// ---- TCP: flow control
// ----------------------------------------------------------------------------

SCENARIO(tcp_flow_control_pause_resume) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    sp->t->pause_reading();
    cp->t->set_write_buffer_limits(4096, 1024);
    say("limits", limits(cp->t->get_write_buffer_limits()));
    std::string chunk(65536, 'y');
    std::size_t writes = 0;
    while (!cp->has("pause_writing")) {
      cp->t->write(chunk);
      if (++writes > 1000) {
        say("never paused");
        break;
      }
    }
    say("paused, buffer over high", cp->t->get_write_buffer_size() > 4096);
    cp->t->write(chunk);  // still accepted; no second pause_writing
    std::size_t total = (writes + 1) * chunk.size();
    sp->t->resume_reading();
    while (!cp->has("resume_writing")) co_await loop::sleep(0.001);
    say("resumed, buffer under low", cp->t->get_write_buffer_size() <= 1024);
    while (sp->data.size() < total) co_await loop::sleep(0.001);
    say("server got all", sp->data.size() == total);
    std::vector<std::shared_ptr<Rec>> closing{cp, sp};
    co_await finish(*s.srv, closing);
    sp->dump();
    cp->dump();
  });
}

SCENARIO(tcp_set_write_buffer_limits_pauses_at_once) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    co_await fill_while_peer_paused(*sp, *cp);
    cp->log("lowering the high-water mark");
    cp->t->set_write_buffer_limits(1000);
    cp->log("lowered");
    say("limits", limits(cp->t->get_write_buffer_limits()));
    cp->t->abort();
    co_await cp->lost;
    sp->t->resume_reading();
    co_await sp->lost;
    cp->dump();
    co_await close_server(*s.srv);
  });
}

SCENARIO(tcp_write_buffer_limits_defaults_and_errors) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto& t = *s.cp->t;
    say("default", limits(t.get_write_buffer_limits()));
    t.set_write_buffer_limits(1000);
    say("high only", limits(t.get_write_buffer_limits()));
    t.set_write_buffer_limits(std::nullopt, 1000);
    say("low only", limits(t.get_write_buffer_limits()));
    t.set_write_buffer_limits(0);
    say("high zero", limits(t.get_write_buffer_limits()));
    t.set_write_buffer_limits();
    say("reset", limits(t.get_write_buffer_limits()));
    try {
      t.set_write_buffer_limits(10, 20);
    } catch (const std::exception& e) {
      say("high < low:", diff::exception_name(e), e.what());
    }
    say("unchanged", limits(t.get_write_buffer_limits()));
    std::vector<std::shared_ptr<Rec>> closing{s.cp, s.sp};
    co_await finish(*s.srv, closing);
  });
}

// ---- TCP: reading
// -----------------------------------------------------------------------------------

SCENARIO(tcp_pause_resume_reading) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    sp->t->pause_reading();
    say("server reading", sp->t->is_reading());
    sp->t->pause_reading();  // twice: nothing more
    cp->t->write("abc");
    cp->t->write_eof();
    co_await loop::sleep(0.05);
    say("while paused: got", "'" + sp->data + "'", "eof", sp->eof.done());
    sp->t->resume_reading();
    sp->t->resume_reading();
    say("server reading", sp->t->is_reading());
    co_await sp->lost;
    say("got", sp->data, "reading after close", sp->t->is_reading());
    sp->t->pause_reading();
    sp->t->resume_reading();
    say("pause/resume after close: reading", sp->t->is_reading());
    co_await cp->lost;
    sp->dump();
    co_await close_server(*s.srv);
  });
}

SCENARIO(tcp_resume_reading_after_half_open_eof_reports_eof_again) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    Rec* spr = sp.get();
    auto count = std::make_shared<int>(0);
    sp->on_eof = [spr, count, &lp] {
      ++*count;
      spr->log("reading", spr->t->is_reading(), "closing", spr->t->is_closing());
      if (*count == 1) {
        lp.call_soon([spr] {
          spr->t->pause_reading();
          spr->log("paused: reading", spr->t->is_reading());
          spr->t->resume_reading();
          spr->log("resumed: reading", spr->t->is_reading());
        });
        return true;
      }
      spr->t->close();
      return true;
    };
    cp->t->write_eof();
    co_await sp->lost;
    cp->t->close();
    co_await cp->lost;
    sp->dump();
    co_await close_server(*s.srv);
  });
}

SCENARIO(tcp_extra_info) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    for (auto& [name, t] : {std::pair<std::string, loop::Transport*>{"client", cp->t.get()},
                            std::pair<std::string, loop::Transport*>{"server", sp->t.get()}}) {
      auto peer = t->extra<loop::SocketAddress>("peername");
      auto sock = t->extra<loop::SocketAddress>("sockname");
      say(name, "peername host", peer->host(), "sockname host", sock->host());
      say(name, "socket present", t->get_extra_info("socket").has_value());
      std::any dflt = t->get_extra_info("no such key", std::string("dflt"));
      std::any none = t->get_extra_info("no such key");
      say(name, "unknown key", std::any_cast<std::string>(dflt),
          none.has_value() ? "something" : "None");
    }
    int port = server_port(*s.srv);
    say("client peer port is the server's",
        cp->t->extra<loop::SocketAddress>("peername")->port() == port);
    say("server sees the client's port", sp->t->extra<loop::SocketAddress>("peername")->port() ==
                                             cp->t->extra<loop::SocketAddress>("sockname")->port());
    std::vector<std::shared_ptr<Rec>> closing{cp, sp};
    co_await finish(*s.srv, closing);
  });
}

SCENARIO(tcp_set_protocol_mid_stream) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    auto other = std::make_shared<Rec>(lp, "other");
    Rec* spr = sp.get();
    Rec* cpr = cp.get();
    sp->on_data = [spr, cpr, other, &lp](std::string) {
      auto t = spr->t;
      t->set_protocol(other);
      other->t = t;
      spr->log("switched; get_protocol is the new one", t->get_protocol() == other);
      lp.call_soon([cpr] { cpr->t->write("second"); });
    };
    cp->t->write("first");
    while (other->data != "second") co_await loop::sleep(0.001);
    cp->t->write_eof();
    co_await other->lost;
    co_await cp->lost;
    say("old got", sp->data, "new got", other->data);
    sp->on_data = nullptr;  // the cycle through `other`
    sp->dump();
    other->dump();
    co_await close_server(*s.srv);
  });
}

SCENARIO(tcp_data_received_exception_is_fatal) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::vector<std::string> contexts;
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    lp.set_exception_handler([&contexts, sp](loop::EventLoop&, const loop::ExceptionContext& ctx) {
      std::string exc = "None";
      try {
        if (ctx.exception) std::rethrow_exception(ctx.exception);
      } catch (const std::exception& e) {
        exc = diff::exception_name(e) + " " + e.what();
      }
      contexts.push_back("handler: " + ctx.message + " " + exc);
      contexts.push_back(words("handler has transport and protocol", ctx.transport == sp->t.get(),
                               ctx.protocol == sp.get()));
    });
    sp->on_data = [](std::string) { throw std::runtime_error("boom"); };
    cp->t->write("a");
    co_await sp->lost;
    co_await cp->lost;
    for (auto& c : contexts) say(c);
    sp->dump();
    cp->dump();
    lp.set_exception_handler(nullptr);
    co_await close_server(*s.srv);
  });
}

// ---- BufferedProtocol
// -------------------------------------------------------------------------------

namespace {
class Buffered : public loop::BufferedProtocol {
 public:
  Buffered(loop::EventLoop& lp, std::size_t size)
      : buf(size), made(lp.create_future<void>()), lost(lp.create_future<void>()) {}
  void connection_made(loop::BaseTransport& bt) override {
    t = std::dynamic_pointer_cast<loop::Transport>(bt.shared_transport());
    events.push_back("connection_made");
    made.set_result();
  }
  std::span<char> get_buffer(std::size_t) override {
    events.push_back("get_buffer");
    return {buf.data(), buf.size()};
  }
  void buffer_updated(std::size_t nbytes) override {
    std::string chunk(buf.data(), nbytes);
    data += chunk;
    events.push_back(words("buffer_updated", nbytes, chunk));
  }
  bool eof_received() override {
    events.push_back("eof_received");
    return false;
  }
  void connection_lost(std::exception_ptr exc) override {
    events.push_back("connection_lost " + exc_name(exc));
    lost.set_result();
  }
  std::vector<char> buf;
  std::vector<std::string> events;
  std::string data;
  std::shared_ptr<loop::Transport> t;
  loop::Future<void> made, lost;
};
}  // namespace

SCENARIO(buffered_protocol_get_buffer_order) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto made = std::make_shared<std::vector<std::shared_ptr<Buffered>>>();
    auto srv = co_await lp.create_server(
        [&lp, &made] {
          auto p = std::make_shared<Buffered>(lp, 4);
          made->push_back(p);
          return p;
        },
        "127.0.0.1", 0);
    int port = server_port(*srv);
    auto cp = std::make_shared<Rec>(lp, "client");
    auto conn2 = co_await lp.create_connection([&cp] { return cp; }, "127.0.0.1", port);
    while (made->empty()) co_await loop::sleep(0.001);
    auto sp = made->at(0);
    co_await sp->made;
    sp->t->pause_reading();
    cp->t->write("abcdefghij");
    cp->t->write_eof();
    co_await loop::sleep(0.05);  // all of it, and the FIN, wait in the kernel
    sp->t->resume_reading();
    co_await sp->lost;
    co_await cp->lost;
    for (auto& e : sp->events) say("server:", e);
    cp->dump();
    co_await close_server(*srv);
  });
}

// ---- Server objects
// ---------------------------------------------------------------------------------

SCENARIO(server_start_serving_false_then_start) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto made = std::make_shared<std::vector<std::shared_ptr<Rec>>>();
    loop::ServerOptions opts;
    opts.start_serving = false;
    auto srv = co_await lp.create_server(
        [&lp, &made] {
          auto p = std::make_shared<Rec>(lp, "server");
          made->push_back(p);
          return p;
        },
        "127.0.0.1", 0, opts);
    int port = server_port(*srv);
    say("serving", srv->is_serving(), "sockets", srv->sockets().size());
    try {
      auto conn3 = co_await lp.create_connection(
          [&lp] { return std::make_shared<Rec>(lp, "early"); }, "127.0.0.1", port);
      say("connected before start_serving");
    } catch (const std::exception& e) {
      say("connect before start_serving:", diff::exception_name(e));
    }
    co_await srv->start_serving();
    say("serving", srv->is_serving());
    co_await srv->start_serving();  // idempotent
    auto cp = std::make_shared<Rec>(lp, "client");
    auto conn4 = co_await lp.create_connection([&cp] { return cp; }, "127.0.0.1", port);
    while (made->empty()) co_await loop::sleep(0.001);
    co_await made->at(0)->made;
    say("accepted", made->size());
    std::vector<std::shared_ptr<Rec>> closing{cp, made->at(0)};
    co_await finish(*srv, closing);
    say("serving", srv->is_serving(), "sockets", srv->sockets().size());
    made->at(0)->dump();
    cp->dump();
  });
}

SCENARIO(server_close_keeps_accepted_connections) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    int port = server_port(*s.srv);
    s.srv->close();
    s.srv->close();  // twice: nothing more
    say("serving", s.srv->is_serving(), "sockets", s.srv->sockets().size());
    say("accepted connection closing", sp->t->is_closing());
    Rec* spr = sp.get();
    sp->on_data = [spr](std::string d) { spr->t->write(std::string(d.rbegin(), d.rend())); };
    cp->t->write("abc");
    while (cp->data != "cba") co_await loop::sleep(0.001);
    say("still talking:", cp->data);
    try {
      auto conn5 = co_await lp.create_connection(
          [&lp] { return std::make_shared<Rec>(lp, "late"); }, "127.0.0.1", port);
      say("connected after close");
    } catch (const std::exception& e) {
      say("connect after close:", diff::exception_name(e));
    }
    cp->t->close();
    co_await sp->lost;
    co_await cp->lost;
    co_await s.srv->wait_closed();
    say("wait_closed returned");
    sp->dump();
    cp->dump();
  });
}

SCENARIO(server_serve_forever_cancelled) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    loop::ServerOptions opts;
    opts.start_serving = false;
    auto srv = co_await lp.create_server([&lp] { return std::make_shared<Rec>(lp, "s"); },
                                         "127.0.0.1", 0, opts);
    auto task = lp.create_task(srv->serve_forever());
    co_await loop::sleep(0.01);
    say("serving", srv->is_serving());
    try {
      co_await srv->serve_forever();
    } catch (const std::exception& e) {
      say("second serve_forever:", diff::exception_name(e));
    }
    task.cancel();
    try {
      co_await task;
    } catch (const loop::CancelledError&) {
      say("serve_forever raised CancelledError");
    }
    say("task cancelled", task.cancelled(), "serving", srv->is_serving(), "sockets",
        srv->sockets().size());
    try {
      co_await srv->serve_forever();
    } catch (const std::exception& e) {
      say("serve_forever on a closed server:", diff::exception_name(e));
    }
    co_await srv->wait_closed();
    say("wait_closed returned");
  });
}

SCENARIO(server_close_cancels_serve_forever) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto srv =
        co_await lp.create_server([&lp] { return std::make_shared<Rec>(lp, "s"); }, "127.0.0.1", 0);
    auto task = lp.create_task(srv->serve_forever());
    loop::Future<void> fut = task;
    fut.add_done_callback(
        [](loop::Future<void> t) { say("done callback: cancelled", t.cancelled()); });
    co_await loop::sleep(0.01);
    say("closing the server");
    srv->close();
    say("task done right after close", task.done());
    try {
      co_await task;
    } catch (const loop::CancelledError&) {
      say("awaiting it: CancelledError");
    }
    say("serving", srv->is_serving());
    co_await srv->wait_closed();
  });
}

SCENARIO(server_wait_closed_before_close) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto srv =
        co_await lp.create_server([&lp] { return std::make_shared<Rec>(lp, "s"); }, "127.0.0.1", 0);
    auto waiter = [](std::shared_ptr<loop::Server> s) -> loop::Coroutine<void> {
      co_await s->wait_closed();
      say("wait_closed returned");
    };
    auto task = lp.create_task(waiter(srv));
    co_await loop::sleep(0.01);
    say("still waiting", !task.done());
    srv->close();
    say("closed");
    co_await task;
    co_await srv->wait_closed();
    say("again: returns at once");
  });
}

// ---- UNIX sockets, accepted sockets
// --------------------------------------------------------------

SCENARIO(unix_server_connection_order) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    char tmpl[] = "/tmp/diff_protocols_XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    std::string path = dir + "/s.sock";
    auto made = std::make_shared<std::vector<std::shared_ptr<Rec>>>();
    auto srv = co_await lp.create_unix_server(
        [&lp, &made] {
          auto p = std::make_shared<Rec>(lp, "server");
          made->push_back(p);
          return p;
        },
        path);
    struct stat st;
    say("sockets", srv->sockets().size(), "file exists", ::stat(path.c_str(), &st) == 0);
    auto cp = std::make_shared<Rec>(lp, "client");
    auto conn6 = co_await lp.create_unix_connection([&cp] { return cp; }, path);
    while (made->empty()) co_await loop::sleep(0.001);
    auto sp = made->at(0);
    co_await sp->made;
    say("client peername is the path",
        cp->t->extra<loop::SocketAddress>("peername")->host() == path);
    say("server sockname is the path",
        sp->t->extra<loop::SocketAddress>("sockname")->host() == path);
    Rec* spr = sp.get();
    sp->on_data = [spr](std::string d) { spr->t->write(d + "!"); };
    sp->on_eof = [spr] {
      spr->t->write("bye");
      spr->t->close();
      return true;
    };
    cp->t->write("hi");
    while (cp->data != "hi!") co_await loop::sleep(0.001);
    cp->t->write_eof();
    co_await cp->lost;
    co_await sp->lost;
    say("client got", cp->data);
    srv->close();
    co_await srv->wait_closed();
    say("serving", srv->is_serving());
    sp->dump();
    cp->dump();
    ::unlink(path.c_str());
    ::rmdir(dir.c_str());
  });
}

SCENARIO(connect_accepted_socket_socketpair) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int fds[2];
    ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
    int a = fds[0], b = fds[1];
    if (::send(b, "early", 5, 0) != 5) say("send failed");  // waiting before the transport exists
    auto p = std::make_shared<Rec>(lp, "accepted");
    auto [t, proto] = co_await lp.connect_accepted_socket([&p] { return p; }, a);
    say("returned after connection_made", p->made.done(), "same protocol", proto == p);
    co_await loop::sleep(0.02);
    t->write("reply");
    char buf[100];
    ssize_t n = ::recv(b, buf, sizeof buf, 0);
    say("peer got", std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0));
    ::shutdown(b, SHUT_WR);
    co_await p->eof;
    co_await p->lost;
    ::close(b);
    say("got", p->data);
    p->dump();
  });
}

// ---- Datagrams
// ------------------------------------------------------------------------------------

namespace {
class Dgram : public loop::DatagramProtocol {
 public:
  Dgram(loop::EventLoop& lp, std::string n) : name(std::move(n)), lost(lp.create_future<void>()) {}
  void connection_made(loop::BaseTransport&) override { events.push_back("connection_made"); }
  void datagram_received(std::string_view data, const loop::SocketAddress& addr) override {
    events.push_back("datagram_received " + std::string(data));
    got.emplace_back(std::string(data), addr);
    if (on_datagram) on_datagram(std::string(data), addr);
  }
  void error_received(std::exception_ptr exc) override {
    events.push_back("error_received " + exc_name(exc));
  }
  void connection_lost(std::exception_ptr exc) override {
    events.push_back("connection_lost " + exc_name(exc));
    lost.set_result();
  }
  void dump() const {
    for (auto& e : events) say(name + ":", e);
  }
  std::string name;
  std::vector<std::string> events;
  std::vector<std::pair<std::string, loop::SocketAddress>> got;
  loop::Future<void> lost;
  std::function<void(std::string, const loop::SocketAddress&)> on_datagram;
};

loop::Coroutine<void> wait_datagrams(Dgram& p, std::size_t n) {
  for (int i = 0; i < 2000 && p.got.size() < n; ++i) co_await loop::sleep(0.001);
}

loop::DatagramEndpointOptions local_any() {
  loop::DatagramEndpointOptions o;
  o.local_addr = loop::SocketAddress::from_ip("127.0.0.1", 0);
  return o;
}

loop::DatagramEndpointOptions remote(loop::SocketAddress addr) {
  loop::DatagramEndpointOptions o;
  o.remote_addr = addr;
  return o;
}
}  // namespace

SCENARIO(datagram_received_order_and_reply) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto [st, sp] = co_await lp.create_datagram_endpoint(
        [&lp] { return std::make_shared<Dgram>(lp, "server"); }, local_any());
    auto saddr = *st->extra<loop::SocketAddress>("sockname");
    auto [ct, cp] = co_await lp.create_datagram_endpoint(
        [&lp] { return std::make_shared<Dgram>(lp, "client"); }, remote(saddr));
    say("client peername is the server", *ct->extra<loop::SocketAddress>("peername") == saddr);
    say("server peername", st->get_extra_info("peername").has_value() ? "something" : "None");
    loop::DatagramTransport* stp = st.get();
    sp->on_datagram = [stp](std::string data, const loop::SocketAddress& addr) {
      for (auto& c : data) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      stp->sendto(data, addr);
    };
    for (const char* word : {"one", "two", "three"}) ct->sendto(word);
    co_await wait_datagrams(*cp, 3);
    bool all_server = true;
    for (auto& g : cp->got) all_server = all_server && g.second == saddr;
    say("reply from the server's address", all_server);
    auto csock = *ct->extra<loop::SocketAddress>("sockname");
    bool all_client = true;
    for (auto& g : sp->got) all_client = all_client && g.second == csock;
    say("server saw the client's address", all_client);
    try {
      ct->sendto("x", loop::SocketAddress::from_ip("127.0.0.1", 9));
    } catch (const std::exception& e) {
      say("sendto elsewhere on a connected endpoint:", diff::exception_name(e));
    }
    ct->close();
    st->close();
    co_await cp->lost;
    co_await sp->lost;
    sp->on_datagram = nullptr;
    sp->dump();
    cp->dump();
  });
}

SCENARIO(datagram_connected_error_received) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int probe = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    auto any = loop::SocketAddress::from_ip("127.0.0.1", 0);
    ::bind(probe, any.data(), any.size());
    loop::SocketAddress dead;
    socklen_t len = loop::SocketAddress::capacity();
    ::getsockname(probe, dead.data(), &len);
    dead.set_size(len);
    ::close(probe);  // nobody listens there now
    auto [t, p] = co_await lp.create_datagram_endpoint(
        [&lp] { return std::make_shared<Dgram>(lp, "client"); }, remote(dead));
    t->sendto("anyone");
    co_await loop::sleep(0.05);
    say("closing after the error", t->is_closing());
    t->close();
    co_await p->lost;
    p->dump();
  });
}

SCENARIO(datagram_sendto_after_close) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto [rt, rp] = co_await lp.create_datagram_endpoint(
        [&lp] { return std::make_shared<Dgram>(lp, "receiver"); }, local_any());
    auto raddr = *rt->extra<loop::SocketAddress>("sockname");
    auto [ct, cp] = co_await lp.create_datagram_endpoint(
        [&lp] { return std::make_shared<Dgram>(lp, "connected"); }, remote(raddr));
    auto [ut, up] = co_await lp.create_datagram_endpoint(
        [&lp] { return std::make_shared<Dgram>(lp, "unconnected"); }, local_any());
    ct->close();
    ct->sendto("c-after-close");  // dropped: a connected endpoint counts it
    ut->close();
    ut->sendto("u-after-close", raddr);  // the socket is still open until connection_lost
    say("closing", ct->is_closing(), ut->is_closing());
    co_await cp->lost;
    co_await up->lost;
    co_await loop::sleep(0.02);
    rt->close();
    co_await rp->lost;
    rp->dump();
    cp->dump();
    up->dump();
  });
}

SCENARIO(datagram_abort_and_buffer_size) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.create_datagram_endpoint(
        [&lp] { return std::make_shared<Dgram>(lp, "ep"); }, local_any());
    say("buffer", t->get_write_buffer_size(), "closing", t->is_closing());
    t->abort();
    say("closing", t->is_closing(), "lost yet", p->lost.done());
    t->abort();
    t->close();
    co_await p->lost;
    co_await loop::sleep(0.01);
    p->dump();
  });
}

// ---- Pipes
// ----------------------------------------------------------------------------------------

SCENARIO(read_pipe_eof_then_connection_lost) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) say("pipe failed");
    if (::write(fds[1], "abc", 3) != 3) say("write failed");
    ::close(fds[1]);
    auto p = std::make_shared<Rec>(lp, "reader");
    std::shared_ptr<loop::ReadTransport> tr;
    Rec* pr = p.get();
    p->on_eof = [pr, &lp, &tr] {
      lp.call_soon([pr] { pr->log("scheduled by eof_received"); });
      pr->log("closing in eof_received", tr->is_closing());
      return true;  // ignored by a read pipe
    };
    auto res = co_await lp.connect_read_pipe([&p] { return p; }, fds[0]);
    tr = res.first;
    say("pipe extra present", tr->get_extra_info("pipe").has_value());
    co_await p->lost;
    co_await loop::sleep(0);
    say("got", p->data, "closing", tr->is_closing());
    p->on_eof = nullptr;
    p->dump();
  });
}

SCENARIO(read_pipe_pause_resume) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) say("pipe failed");
    auto p = std::make_shared<Rec>(lp, "reader");
    auto [t, proto] = co_await lp.connect_read_pipe([&p] { return p; }, fds[0]);
    t->pause_reading();
    t->pause_reading();  // twice: nothing more
    if (::write(fds[1], "xyz", 3) != 3) say("write failed");
    co_await loop::sleep(0.03);
    say("while paused: got", "'" + p->data + "'");
    t->resume_reading();
    t->resume_reading();
    while (p->data != "xyz") co_await loop::sleep(0.001);
    ::close(fds[1]);
    co_await p->lost;
    t->resume_reading();  // after the close: nothing
    say("got", p->data, "closing", t->is_closing());
    p->dump();
  });
}

namespace {
class PipeWriter : public loop::BaseProtocol {
 public:
  explicit PipeWriter(loop::EventLoop& lp) : lost(lp.create_future<void>()) {}
  void connection_made(loop::BaseTransport&) override { events.push_back("connection_made"); }
  void connection_lost(std::exception_ptr exc) override {
    events.push_back("connection_lost " + exc_name(exc));
    lost.set_result();
  }
  void pause_writing() override { events.push_back("pause_writing"); }
  void resume_writing() override { events.push_back("resume_writing"); }
  void dump() const {
    for (auto& e : events) say("writer:", e);
  }
  std::vector<std::string> events;
  loop::Future<void> lost;
};
}  // namespace

SCENARIO(write_pipe_reader_closed_empty_buffer) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) say("pipe failed");
    auto [t, p] =
        co_await lp.connect_write_pipe([&lp] { return std::make_shared<PipeWriter>(lp); }, fds[1]);
    say("can_write_eof", t->can_write_eof(), "pipe extra present",
        t->get_extra_info("pipe").has_value());
    t->write("hello");
    char buf[100];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    say("reader got", std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0));
    ::close(fds[0]);
    co_await p->lost;
    say("closing", t->is_closing());
    t->write("ignored");
    p->dump();
  });
}

SCENARIO(write_pipe_reader_closed_with_buffer) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) say("pipe failed");
    auto [t, p] =
        co_await lp.connect_write_pipe([&lp] { return std::make_shared<PipeWriter>(lp); }, fds[1]);
    t->write(std::string(100000, 'z'));  // more than the pipe holds
    say("buffered", t->get_write_buffer_size() > 0);
    ::close(fds[0]);
    co_await p->lost;
    say("buffered after", t->get_write_buffer_size());
    p->dump();
  });
}

SCENARIO(write_pipe_write_to_closed_reader) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) say("pipe failed");
    auto [t, p] =
        co_await lp.connect_write_pipe([&lp] { return std::make_shared<PipeWriter>(lp); }, fds[1]);
    ::close(fds[0]);
    t->write("nobody");  // EPIPE at once, before the loop sees the reader gone
    say("closing", t->is_closing(), "lost yet", p->lost.done());
    t->write("more");  // counted, not sent
    co_await p->lost;
    p->dump();
  });
}

SCENARIO(write_pipe_flow_control_and_close_flushes) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) say("pipe failed");
    int r = fds[0];
    auto [t, p] =
        co_await lp.connect_write_pipe([&lp] { return std::make_shared<PipeWriter>(lp); }, fds[1]);
    t->set_write_buffer_limits(1000, 100);
    say("limits", limits(t->get_write_buffer_limits()));
    t->write(std::string(70000, 'q'));
    say("events", join(p->events));
    t->close();
    say("closing", t->is_closing(), "lost yet", p->lost.done());
    ::fcntl(r, F_SETFL, ::fcntl(r, F_GETFL) | O_NONBLOCK);
    std::size_t got = 0;
    std::vector<char> buf(1 << 20);
    while (got < 70000) {
      ssize_t n = ::read(r, buf.data(), buf.size());
      if (n > 0)
        got += static_cast<std::size_t>(n);
      else
        co_await loop::sleep(0.001);
    }
    co_await p->lost;
    say("reader got", got, "then eof", ::read(r, buf.data(), 10) == 0);
    ::close(r);
    p->dump();
  });
}

SCENARIO(write_pipe_write_eof_then_connection_lost) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) say("pipe failed");
    int r = fds[0];
    auto [t, p] =
        co_await lp.connect_write_pipe([&lp] { return std::make_shared<PipeWriter>(lp); }, fds[1]);
    t->write("data");
    t->write_eof();
    say("closing", t->is_closing(), "lost yet", p->lost.done());
    t->write("after");  // ignored
    co_await loop::sleep(0);
    say("lost after one iteration", p->lost.done());
    co_await p->lost;
    char buf[100];
    ssize_t n = ::read(r, buf, sizeof buf);
    std::string got(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    say("reader got", got, "then eof", ::read(r, buf, 10) == 0);
    ::close(r);
    p->dump();
  });
}

// ---- More: closing early, failing factories and protocols
// -------------------------------------------

SCENARIO(tcp_close_in_connection_made) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto made = std::make_shared<std::vector<std::shared_ptr<Rec>>>();
    auto srv = co_await lp.create_server(
        [&lp, &made] {
          auto p = std::make_shared<Rec>(lp, "server");
          made->push_back(p);
          return p;
        },
        "127.0.0.1", 0);
    int port = server_port(*srv);
    auto cp = std::make_shared<Rec>(lp, "client");
    Rec* cpr = cp.get();
    cp->on_made = [cpr] {
      cpr->t->write("last words");
      cpr->t->close();
    };
    auto conn = co_await lp.create_connection([&cp] { return cp; }, "127.0.0.1", port);
    say("create_connection returned; lost already", cp->lost.done(), "closing",
        conn.first->is_closing());
    while (made->empty()) co_await loop::sleep(0.001);
    co_await made->at(0)->lost;
    say("server got", made->at(0)->data);
    made->at(0)->dump();
    cp->dump();
    co_await close_server(*srv);
  });
}

SCENARIO(server_protocol_factory_raises) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::vector<std::string> contexts;
    lp.set_exception_handler([&contexts](loop::EventLoop&, const loop::ExceptionContext& ctx) {
      contexts.push_back(ctx.message);
    });
    auto made = std::make_shared<std::vector<std::shared_ptr<Rec>>>();
    auto srv = co_await lp.create_server(
        [&lp, &made]() -> std::shared_ptr<Rec> {
          if (made->empty()) {
            made->push_back(nullptr);
            throw std::runtime_error("no protocol for you");
          }
          auto p = std::make_shared<Rec>(lp, "server");
          made->push_back(p);
          return p;
        },
        "127.0.0.1", 0);
    int port = server_port(*srv);
    auto c1 = std::make_shared<Rec>(lp, "first");
    auto conn1 = co_await lp.create_connection([&c1] { return c1; }, "127.0.0.1", port);
    co_await c1->lost;
    say("still serving", srv->is_serving());
    auto c2 = std::make_shared<Rec>(lp, "second");
    auto conn2 = co_await lp.create_connection([&c2] { return c2; }, "127.0.0.1", port);
    while (made->size() < 2) co_await loop::sleep(0.001);
    co_await made->at(1)->made;
    std::vector<std::shared_ptr<Rec>> closing{c2, made->at(1)};
    co_await finish(*srv, closing);
    say("exception handler calls", contexts.size());
    c1->dump();
    c2->dump();
    lp.set_exception_handler(nullptr);
  });
}

SCENARIO(tcp_eof_received_exception_is_fatal) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::vector<std::string> contexts;
    lp.set_exception_handler([&contexts](loop::EventLoop&, const loop::ExceptionContext& ctx) {
      std::string exc = "None";
      try {
        if (ctx.exception) std::rethrow_exception(ctx.exception);
      } catch (const std::exception& e) {
        exc = diff::exception_name(e) + " " + e.what();
      }
      contexts.push_back("handler: " + ctx.message + " " + exc);
    });
    Setup s = co_await tcp_setup(lp);
    auto sp = s.sp;
    auto cp = s.cp;
    sp->on_eof = []() -> bool { throw std::invalid_argument("bad eof"); };
    cp->t->write_eof();
    co_await sp->lost;
    co_await cp->lost;
    for (auto& c : contexts) say(c);
    sp->dump();
    cp->dump();
    lp.set_exception_handler(nullptr);
    co_await close_server(*s.srv);
  });
}

namespace {
class EmptyBuffer : public loop::BufferedProtocol {
 public:
  explicit EmptyBuffer(loop::EventLoop& lp)
      : made(lp.create_future<void>()), lost(lp.create_future<void>()) {}
  void connection_made(loop::BaseTransport&) override {
    events.push_back("connection_made");
    made.set_result();
  }
  std::span<char> get_buffer(std::size_t) override {
    events.push_back("get_buffer");
    return {};
  }
  void buffer_updated(std::size_t) override { events.push_back("buffer_updated"); }
  void connection_lost(std::exception_ptr exc) override {
    events.push_back("connection_lost " + exc_name(exc));
    lost.set_result();
  }
  std::vector<std::string> events;
  loop::Future<void> made, lost;
};
}  // namespace

SCENARIO(buffered_protocol_empty_buffer_is_fatal) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::vector<std::string> contexts;
    lp.set_exception_handler([&contexts](loop::EventLoop&, const loop::ExceptionContext& ctx) {
      std::string exc = "None";
      try {
        if (ctx.exception) std::rethrow_exception(ctx.exception);
      } catch (const std::exception& e) {
        exc = diff::exception_name(e) + " " + e.what();
      }
      contexts.push_back("handler: " + ctx.message + " " + exc);
    });
    auto made = std::make_shared<std::vector<std::shared_ptr<EmptyBuffer>>>();
    auto srv = co_await lp.create_server(
        [&lp, &made] {
          auto p = std::make_shared<EmptyBuffer>(lp);
          made->push_back(p);
          return p;
        },
        "127.0.0.1", 0);
    int port = server_port(*srv);
    auto cp = std::make_shared<Rec>(lp, "client");
    auto conn = co_await lp.create_connection([&cp] { return cp; }, "127.0.0.1", port);
    cp->t->write("data");
    while (made->empty()) co_await loop::sleep(0.001);
    co_await made->at(0)->lost;
    co_await cp->lost;
    for (auto& c : contexts) say(c);
    for (auto& e : made->at(0)->events) say("server:", e);
    cp->dump();
    lp.set_exception_handler(nullptr);
    co_await close_server(*srv);
  });
}

SCENARIO(unix_connection_errors) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    char tmpl[] = "/tmp/diff_protocols_XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    auto factory = [&lp] { return std::make_shared<Rec>(lp, "c"); };
    try {
      auto conn = co_await lp.create_unix_connection(factory, dir + "/none");
    } catch (const std::exception& e) {
      say("missing path:", diff::exception_name(e));
    }
    std::string stale = dir + "/stale";
    int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto addr = loop::SocketAddress::from_unix_path(stale);
    if (::bind(sock, addr.data(), addr.size()) != 0) say("bind failed");
    ::close(sock);  // the file stays, nobody listens behind it
    try {
      auto conn = co_await lp.create_unix_connection(factory, stale);
    } catch (const std::exception& e) {
      say("stale socket file:", diff::exception_name(e));
    }
    std::string plain = dir + "/plain";
    ::close(::open(plain.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    try {
      auto srv = co_await lp.create_unix_server(factory, plain);
    } catch (const std::exception& e) {
      say("server on a regular file:", diff::exception_name(e));
    }
    auto srv = co_await lp.create_unix_server(factory, stale);
    say("server on the stale socket file: sockets", srv->sockets().size());
    co_await close_server(*srv);
    ::unlink(stale.c_str());
    ::unlink(plain.c_str());
    ::rmdir(dir.c_str());
  });
}

SCENARIO(pipes_refuse_regular_files) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    char tmpl[] = "/tmp/diff_protocols_XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    std::string path = dir + "/f";
    ::close(::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    int rfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    try {
      auto res =
          co_await lp.connect_read_pipe([&lp] { return std::make_shared<Rec>(lp, "p"); }, rfd);
      say("read pipe on a regular file: accepted");
    } catch (const std::exception& e) {
      say("read pipe on a regular file:", diff::exception_name(e), e.what());
    }
    ::close(rfd);
    int wfd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    try {
      auto res =
          co_await lp.connect_write_pipe([&lp] { return std::make_shared<Rec>(lp, "p"); }, wfd);
      say("write pipe on a regular file: accepted");
    } catch (const std::exception& e) {
      say("write pipe on a regular file:", diff::exception_name(e), e.what());
    }
    ::close(wfd);
    ::unlink(path.c_str());
    ::rmdir(dir.c_str());
  });
}

SCENARIO(datagram_empty_datagram_is_received) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.create_datagram_endpoint(
        [&lp] { return std::make_shared<Dgram>(lp, "ep"); }, local_any());
    auto addr = *t->extra<loop::SocketAddress>("sockname");
    int raw = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (::sendto(raw, "", 0, 0, addr.data(), addr.size()) != 0) say("send failed");
    if (::sendto(raw, "after", 5, 0, addr.data(), addr.size()) != 5) say("send failed");
    co_await wait_datagrams(*p, 2);
    std::string lengths;
    for (auto& g : p->got) lengths += " " + std::to_string(g.first.size());
    say("lengths" + lengths);
    ::close(raw);
    t->close();
    co_await p->lost;
    p->dump();
  });
}

SCENARIO(write_pipe_abort_with_buffer) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) say("pipe failed");
    int r = fds[0];
    auto [t, p] =
        co_await lp.connect_write_pipe([&lp] { return std::make_shared<PipeWriter>(lp); }, fds[1]);
    t->write(std::string(100000, 'w'));
    say("buffered", t->get_write_buffer_size());
    t->abort();
    say("after abort: buffered", t->get_write_buffer_size(), "closing", t->is_closing(), "lost yet",
        p->lost.done());
    t->write("more");
    co_await p->lost;
    std::size_t got = 0;
    std::vector<char> buf(1 << 20);
    for (;;) {
      ssize_t n = ::read(r, buf.data(), buf.size());
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    ::close(r);
    say("reader got", got);
    p->dump();
  });
}

SCENARIO(protocol_factory_then_connection_made_order) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto logs = std::make_shared<std::map<std::string, std::vector<std::string>>>();
    auto protos = std::make_shared<std::map<std::string, std::shared_ptr<Rec>>>();
    auto ticks = std::make_shared<std::function<void(std::string, int)>>();
    *ticks = [logs, &lp, weak = std::weak_ptr(ticks)](std::string side, int n) {
      (*logs)[side].push_back("tick " + std::to_string(n));
      if (n < 3) lp.call_soon(*weak.lock(), side, n + 1);
    };
    auto factory = [logs, protos, ticks, &lp](std::string side) {
      (*logs)[side].push_back("factory");
      lp.call_soon(*ticks, side, 1);
      auto p = std::make_shared<Rec>(lp, side);
      p->on_made = [logs, side] { (*logs)[side].push_back("connection_made"); };
      (*protos)[side] = p;
      return p;
    };
    auto srv = co_await lp.create_server([&factory] { return factory("server"); }, "127.0.0.1", 0);
    int port = server_port(*srv);
    auto conn =
        co_await lp.create_connection([&factory] { return factory("client"); }, "127.0.0.1", port);
    (*logs)["client"].push_back("create_connection returned");
    co_await loop::sleep(0.05);
    std::vector<std::shared_ptr<Rec>> closing{(*protos)["client"], (*protos)["server"]};
    co_await finish(*srv, closing);
    for (const char* side : {"server", "client"})
      for (auto& e : (*logs)[side]) say(std::string(side) + ":", e);
  });
}

SCENARIO(read_pipe_close_with_data_pending) {
  ::signal(SIGPIPE, SIG_IGN);  // as Python does at startup
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) say("pipe failed");
    int w = fds[1];
    auto p = std::make_shared<Rec>(lp, "reader");
    auto [t, proto] = co_await lp.connect_read_pipe([&p] { return p; }, fds[0]);
    if (::write(w, "unread", 6) != 6) say("write failed");
    t->close();
    say("closing", t->is_closing(), "lost yet", p->lost.done());
    t->close();
    co_await p->lost;
    if (::write(w, "x", 1) == 1)
      say("write after the reader closed: accepted");
    else if (errno == EPIPE)
      say("write after the reader closed: BrokenPipeError");
    ::close(w);
    say("got", "'" + p->data + "'");
    p->dump();
  });
}

// Differential scenarios of Server objects and of streams over real connections: serving,
// closing, limits, flow control, resets (the asyncio half: diff_servers_streams.py).
//
// Server::wait_closed with live connections is left out on purpose (libloop follows 3.12 there,
// README "departs from asyncio 3.7 on purpose").
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <any>
#include <cctype>
#include <cstdio>
#include <functional>
#include <loop/loop.hpp>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "scenario.hpp"

using diff::B;
using diff::say;

namespace {

constexpr std::size_t kBig = 4 * 1024 * 1024;  // far more than the kernel takes (SO_SNDBUF 64K)

std::string opt(const std::optional<std::size_t>& v) {
  return v ? std::to_string(*v) : std::string("None");
}

std::string limits(const std::pair<std::size_t, std::size_t>& l) {
  return "(" + std::to_string(l.first) + ", " + std::to_string(l.second) + ")";
}

std::string err(const std::exception& e) {
  return diff::exception_name(e);
}

std::string err(const std::exception_ptr& p) {
  if (!p) return "None";
  try {
    std::rethrow_exception(p);
  } catch (const std::exception& e) {
    return diff::exception_name(e);
  }
}

void say_exc(const std::string& what, const std::exception& e) {
  say(what, diff::exception_name(e), e.what());
}

template <class F>
void run(F body) {
  loop::EventLoop lp;
  lp.run_until_complete(body(lp));
  lp.close();
}

void tick(loop::EventLoop* lp, int i, int n) {
  say("tick", i);
  if (i < n) lp->call_soon(&tick, lp, i + 1, n);
}

// Says 'tick 1' .. 'tick n', one per iteration, from the next iteration on.
void ticker(loop::EventLoop& lp, int n) {
  lp.call_soon(&tick, &lp, 1, n);
}

using Reader = std::shared_ptr<loop::StreamReader>;
using Writer = std::shared_ptr<loop::StreamWriter>;
using ServerPtr = std::shared_ptr<loop::Server>;

int port_of(const ServerPtr& srv) {
  return srv->sockets().at(0).port();
}

int fd_of(const Writer& w) {
  return std::any_cast<int>(w->get_extra_info("socket"));
}

loop::SocketAddress addr_info(const Writer& w, const char* name) {
  return std::any_cast<loop::SocketAddress>(w->get_extra_info(name));
}

void small_sndbuf(const Writer& w) {
  int size = 65536;
  ::setsockopt(fd_of(w), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

void linger_zero(int fd) {
  struct linger lg = {1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

// Closes a connected socket with SO_LINGER 0: the peer gets a RST.
void reset_and_close(int fd) {
  linger_zero(fd);
  ::close(fd);
}

int blocking_client(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto addr = loop::SocketAddress::from_ip("127.0.0.1", static_cast<unsigned short>(port));
  if (::connect(s, addr.data(), addr.size()) != 0) throw std::runtime_error("connect");
  return s;
}

loop::ServerOptions not_serving() {
  loop::ServerOptions o;
  o.start_serving = false;
  return o;
}

loop::Coroutine<void> nothing(Reader, Writer w) {
  w->close();
  co_return;
}

}  // namespace

// ---- Server objects ----------------------------------------------------------------------------

SCENARIO(server_start_serving_false_then_start_serving_twice) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto srv = co_await loop::start_server(nothing, "127.0.0.1", 0, not_serving());
    say("is_serving", srv->is_serving(), "sockets", srv->sockets().size());
    say("get_loop is the loop", &srv->get_loop() == &lp);
    ticker(lp, 3);
    co_await srv->start_serving();
    say("start_serving returned; is_serving", srv->is_serving());
    co_await srv->start_serving();
    say("start_serving again returned; is_serving", srv->is_serving());
    srv->close();
    say("closed: is_serving", srv->is_serving(), "sockets", srv->sockets().size());
    srv->close();
    say("closed again: is_serving", srv->is_serving(), "sockets", srv->sockets().size());
    co_await srv->wait_closed();
    say("wait_closed returned");
    co_await loop::sleep(0);
  });
}

SCENARIO(server_serve_forever_cancelled_by_close) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto srv = co_await loop::start_server(nothing, "127.0.0.1", 0, not_serving());
    auto serving = [&]() -> loop::Coroutine<void> {
      say("serve_forever starts");
      try {
        co_await srv->serve_forever();
      } catch (const loop::CancelledError&) {
        say("serve_forever raised CancelledError");
        throw;
      }
    };
    auto t = lp.create_task(serving());
    say("before the task runs: is_serving", srv->is_serving());
    co_await loop::sleep(0);
    say("serving: is_serving", srv->is_serving());
    ticker(lp, 2);
    srv->close();
    say("close() returned; task done", t.done());
    try {
      co_await t;
    } catch (const loop::CancelledError&) {
      say("task cancelled", t.cancelled());
    }
    say("is_serving", srv->is_serving(), "sockets", srv->sockets().size());
    co_await srv->wait_closed();
    say("wait_closed returned");
    try {
      co_await srv->serve_forever();
    } catch (const std::runtime_error& e) {
      say("serve_forever on a closed server:", err(e));
    }
  });
}

SCENARIO(server_serve_forever_task_cancelled_closes_the_server) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto srv = co_await loop::start_server(nothing, "127.0.0.1", 0);
    auto t = lp.create_task(srv->serve_forever());
    co_await loop::sleep(0);
    say("serving: is_serving", srv->is_serving(), "sockets", srv->sockets().size());
    bool c = t.cancel();
    say("cancel", c);
    ticker(lp, 2);
    try {
      co_await t;
    } catch (const loop::CancelledError&) {
      say("task cancelled", t.cancelled());
    }
    say("is_serving", srv->is_serving(), "sockets", srv->sockets().size());
    co_await srv->wait_closed();
    say("wait_closed returned");
  });
}

SCENARIO(server_serve_forever_twice_is_refused_and_accepts_meanwhile) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      std::string line = co_await r->readline();
      say("server: got", B(line));
      w->write("pong\n");
      co_await w->drain();
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0, not_serving());
    auto t = lp.create_task(srv->serve_forever());
    co_await loop::sleep(0);
    try {
      co_await srv->serve_forever();
    } catch (const std::runtime_error& e) {
      say("second serve_forever:", err(e));
    }
    say("first still serving", !t.done(), srv->is_serving());
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port_of(srv));
    w->write("ping\n");
    std::string got = co_await r->readline();
    say("client: got", B(got));
    got = co_await r->read();
    say("client: then", B(got));
    co_await done;
    w->close();
    co_await w->wait_closed();
    srv->close();
    try {
      co_await t;
    } catch (const loop::CancelledError&) {
      say("serve_forever cancelled by close", t.cancelled());
    }
    co_await srv->wait_closed();
  });
}

SCENARIO(server_wait_closed_before_close_wakes_one_iteration_later) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto srv = co_await loop::start_server(nothing, "127.0.0.1", 0);
    auto waiter = [&](std::string name) -> loop::Coroutine<void> {
      say(name, "waits");
      co_await srv->wait_closed();
      say(name, "woken");
    };
    auto t1 = lp.create_task(waiter("w1"));
    auto t2 = lp.create_task(waiter("w2"));
    co_await loop::sleep(0);
    ticker(lp, 3);
    say("close");
    srv->close();
    co_await t1;
    co_await t2;
    co_await srv->wait_closed();
    say("wait_closed after close returned");
    co_await loop::sleep(0);
    co_await loop::sleep(0);
  });
}

// `async with server:` is ServerGuard's scope, then wait_closed() (asyncio's __aexit__).
SCENARIO(server_as_a_context_manager_closes_it) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      std::string got = co_await r->read();
      say("server: got", B(got));
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0, not_serving());
    {
      loop::ServerGuard guard(srv);
      say("inside: is_serving", guard->is_serving());
      co_await guard->start_serving();
      say("inside: is_serving", guard->is_serving(), "sockets", guard->sockets().size());
      auto [r, w] = co_await loop::open_connection("127.0.0.1", port_of(srv));
      w->write("hello");
      w->write_eof();
      co_await done;
      std::string got = co_await r->read();
      say("client: read", B(got));
      w->close();
      co_await w->wait_closed();
    }
    co_await srv->wait_closed();
    say("after: is_serving", srv->is_serving(), "sockets", srv->sockets().size());
  });
}

SCENARIO(server_close_keeps_accepted_connections) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto connected = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      connected.set_result();
      std::string line = co_await r->readline();
      say("server: got", B(line));
      std::string upper = line;
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      w->write(upper);
      co_await w->drain();
      std::string rest = co_await r->read();
      say("server: read at EOF", B(rest));
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port_of(srv));
    co_await connected;
    srv->close();
    say("server closed: is_serving", srv->is_serving(), "sockets", srv->sockets().size());
    try {
      auto again = co_await loop::open_connection("127.0.0.1", addr_info(w, "peername").port());
      say("a new connection: connected (unexpected)");
      again.second->close();
    } catch (const std::system_error& e) {
      say("a new connection:", err(e));
    }
    w->write("still here\n");
    std::string got = co_await r->readline();
    say("client: got", B(got));
    w->write_eof();
    co_await done;
    got = co_await r->read();
    say("client: read at EOF", B(got));
    w->close();
    co_await w->wait_closed();
  });
}

// start_serving=false: the socket is bound but does not listen yet.
SCENARIO(server_not_serving_refuses_then_serves) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      std::string got = co_await r->read();
      say("server: got", B(got));
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0, not_serving());
    int port = port_of(srv);
    try {
      auto early = co_await loop::open_connection("127.0.0.1", port);
      say("connected (unexpected)");
      early.second->close();
    } catch (const std::system_error& e) {
      say("before start_serving:", err(e));
    }
    co_await srv->start_serving();
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
    say("after start_serving: connected");
    w->write("hi");
    w->write_eof();
    co_await done;
    w->close();
    co_await w->wait_closed();
    srv->close();
    co_await srv->wait_closed();

    auto never = co_await loop::start_server(handle, "127.0.0.1", 0, not_serving());
    never->close();
    say("never served, closed: is_serving", never->is_serving(), "sockets",
        never->sockets().size());
    co_await never->wait_closed();
    say("wait_closed returned");
  });
}

SCENARIO(server_accepts_queued_connections_in_order) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto srv_done = lp.create_future<void>();
    std::vector<int> clients;
    std::vector<int> order;
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      int port = addr_info(w, "peername").port();
      int i = -1;
      for (std::size_t k = 0; k < clients.size(); ++k) {
        loop::SocketAddress a;
        socklen_t len = loop::SocketAddress::capacity();
        ::getsockname(clients[k], a.data(), &len);
        a.set_size(len);
        if (a.port() == port) i = static_cast<int>(k);
      }
      say("server: client", i, "connected");
      std::string got = co_await r->readexactly(2);
      say("server: client", i, "got", B(got));
      order.push_back(i);
      w->close();
      if (order.size() == 3) srv_done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    for (int i = 0; i < 3; ++i) {
      int c = blocking_client(port_of(srv));
      std::string msg = "c" + std::to_string(i);
      ::send(c, msg.data(), msg.size(), MSG_NOSIGNAL);
      clients.push_back(c);
    }
    ticker(lp, 6);
    co_await srv_done;
    for (int c : clients) ::close(c);
    srv->close();
    co_await srv->wait_closed();
    for (int i = 0; i < 3; ++i) co_await loop::sleep(0);
  });
}

SCENARIO(server_wait_closed_woken_by_a_cancelled_serve_forever) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto srv = co_await loop::start_server(nothing, "127.0.0.1", 0);
    auto serving = [&]() -> loop::Coroutine<void> {
      try {
        co_await srv->serve_forever();
      } catch (...) {
        say("serve_forever leaves");
        throw;
      }
      say("serve_forever leaves");
    };
    auto waiting = [&]() -> loop::Coroutine<void> {
      say("waiter waits");
      co_await srv->wait_closed();
      say("waiter woken");
    };
    auto t = lp.create_task(serving());
    auto wt = lp.create_task(waiting());
    co_await loop::sleep(0);
    ticker(lp, 4);
    bool c = t.cancel();
    say("cancel serve_forever", c);
    try {
      co_await t;
    } catch (const loop::CancelledError&) {
      say("serve_forever cancelled", t.cancelled(), "waiter done", wt.done());
    }
    co_await wt;
    say("is_serving", srv->is_serving());
    co_await loop::sleep(0);
    co_await loop::sleep(0);
  });
}

// ---- Limits ----------------------------------------------------------------------------------

SCENARIO(stream_start_server_limit_reaches_readline) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      std::string got = co_await r->readline();
      say("server: readline", B(got));
      try {
        co_await r->readline();
      } catch (const std::invalid_argument& e) {
        say_exc("server: readline:", e);
      }
      got = co_await r->readline();
      say("server: readline", B(got));
      try {
        co_await r->readuntil("\n");
      } catch (const loop::LimitOverrunError& e) {
        say_exc("server: readuntil:", e);
        say("consumed", e.consumed);
      }
      got = co_await r->read();
      say("server: read", B(got));
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0, {}, 8);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port_of(srv));
    w->write("short\n0123456789abc\nok\nno-newline-here");
    w->write_eof();
    co_await done;
    w->close();
    co_await w->wait_closed();
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(stream_open_connection_limit_reaches_readuntil_multibyte) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      w->write("ab\r\ncdefgh\r\nijklmnopq");
      w->write_eof();
      co_await r->read();
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port_of(srv), {}, 5);
    std::string got = co_await r->readuntil("\r\n");
    say("client: readuntil", B(got));
    try {
      co_await r->readuntil("\r\n");
    } catch (const loop::LimitOverrunError& e) {
      say_exc("client: readuntil:", e);
      say("consumed", e.consumed);
    }
    got = co_await r->readexactly(8);
    say("client: readexactly(8)", B(got));
    try {
      co_await r->readuntil("\r\n");
    } catch (const loop::LimitOverrunError& e) {
      say_exc("client: readuntil:", e);
      say("consumed", e.consumed);
    }
    got = co_await r->read(3);
    say("client: read(3)", B(got));
    try {
      co_await r->readuntil("q!");
    } catch (const loop::IncompleteReadError& e) {
      // the message says None (3.7) or undefined (3.8+): not printed
      say("client: readuntil at EOF:", err(e), "partial", B(e.partial), "expected",
          opt(e.expected));
    }
    w->close();
    co_await w->wait_closed();
    co_await done;
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(stream_readuntil_multibyte_separator_overlapping_prefix) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      w->write("a--b---c-+-d--");
      w->write_eof();
      co_await r->read();
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port_of(srv));
    std::string got = co_await r->readuntil("---");
    say("readuntil(b'---')", B(got));
    got = co_await r->readuntil("-+-");
    say("readuntil(b'-+-')", B(got));
    got = co_await r->readuntil("--");
    say("readuntil(b'--')", B(got));
    got = co_await r->readline();
    say("readline", B(got));
    say("at_eof", r->at_eof());
    w->close();
    co_await w->wait_closed();
    co_await done;
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(stream_reader_pauses_the_transport_beyond_twice_the_limit) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto go = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      auto t = w->transport();
      say("server: reading", t->is_reading());
      std::string got = co_await r->readexactly(1);
      say("server: readexactly(1)", B(got));
      say("server: after the data: reading", t->is_reading());
      got = co_await r->read(50);
      say("server: read(50)", got.size());
      say("server: 49 left: reading", t->is_reading());
      got = co_await r->read(33);
      say("server: read(33)", got.size());
      say("server: 16 left: reading", t->is_reading());
      got = co_await r->readexactly(16);
      say("server: readexactly(16)", got.size());
      go.set_result();
      got = co_await r->readexactly(150);
      say("server: readexactly(150)", got.size());
      say("server: reading", t->is_reading());
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0, {}, 16);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port_of(srv));
    w->write(std::string(100, 'x'));
    co_await go;
    w->write(std::string(150, 'y'));
    co_await done;
    w->close();
    co_await w->wait_closed();
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(stream_readexactly_beyond_the_buffer_resumes_a_paused_transport) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto more = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      auto t = w->transport();
      std::string got = co_await r->read(1);
      say("server: read(1)", B(got));
      say("server: reading", t->is_reading());
      more.set_result();
      got = co_await r->readexactly(60);
      say("server: readexactly(60)", got.size(), "reading", t->is_reading());
      got = co_await r->read();
      say("server: rest", B(got));
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0, {}, 8);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port_of(srv));
    w->write(std::string(30, 'a'));
    co_await more;
    w->write(std::string(31, 'b') + "tail");
    w->write_eof();
    co_await done;
    w->close();
    co_await w->wait_closed();
    srv->close();
    co_await srv->wait_closed();
  });
}

// ---- Writing: flow control -------------------------------------------------------------------

namespace {
struct PausedPair {
  ServerPtr srv;
  Reader r;
  Writer w;
};

// A server running handle, and a client whose sends the kernel takes little of.
loop::Coroutine<PausedPair> paused_writer_pair(loop::StreamReaderProtocol::ClientConnected handle) {
  auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
  auto [r, w] = co_await loop::open_connection("127.0.0.1", port_of(srv));
  small_sndbuf(w);
  co_return PausedPair{srv, r, w};
}
}  // namespace

SCENARIO(stream_drain_blocks_until_the_peer_reads) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto go = lp.create_future<void>();
    auto done = lp.create_future<void>();
    std::vector<std::string> slog;
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      co_await go;
      slog.push_back("server: reads");
      std::string got = co_await r->readexactly(kBig);
      slog.push_back("server: got " + std::to_string(got.size()) + " bytes");
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto pair = co_await paused_writer_pair(handle);
    auto w = pair.w;
    auto t = w->transport();
    say("limits", limits(t->get_write_buffer_limits()));
    w->write(std::string(kBig, 'z'));
    say("buffered", t->get_write_buffer_size() > 0);
    loop::Coroutine<void> drain_coro = w->drain();
    auto d = lp.create_task(std::move(drain_coro));
    for (int i = 0; i < 3; ++i) co_await loop::sleep(0);
    say("drain done while the peer does not read", d.done());
    go.set_result();
    co_await d;
    say("drain returned; buffered <= low", t->get_write_buffer_size() <= 16384);
    co_await w->drain();
    say("drain again returned at once");
    co_await done;
    for (auto& line : slog) say(line);
    w->close();
    co_await w->wait_closed();
    pair.srv->close();
    co_await pair.srv->wait_closed();
  });
}

SCENARIO(stream_write_buffer_limits_through_the_writer) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto go = lp.create_future<void>();
    auto done = lp.create_future<std::size_t>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      co_await go;
      std::string got = co_await r->readexactly(kBig);
      done.set_result(got.size());
      w->close();
      co_await w->wait_closed();
    };
    auto pair = co_await paused_writer_pair(handle);
    auto w = pair.w;
    auto t = w->transport();
    t->set_write_buffer_limits(100);
    say("high=100", limits(t->get_write_buffer_limits()));
    t->set_write_buffer_limits(std::nullopt, 10);
    say("low=10", limits(t->get_write_buffer_limits()));
    t->set_write_buffer_limits(0);
    say("high=0", limits(t->get_write_buffer_limits()));
    try {
      t->set_write_buffer_limits(10, 20);
    } catch (const std::invalid_argument& e) {
      say_exc("high=10, low=20:", e);
    }
    say("after the refusal", limits(t->get_write_buffer_limits()));
    t->set_write_buffer_limits();
    say("defaults", limits(t->get_write_buffer_limits()));
    w->write(std::string(kBig, 'z'));
    loop::Coroutine<void> drain_coro = w->drain();
    auto d = lp.create_task(std::move(drain_coro));
    co_await loop::sleep(0);
    say("drain waits", !d.done());
    // a high-water mark above what is buffered does not resume the paused writer
    t->set_write_buffer_limits(4 * kBig, 0);
    say("raised to", limits(t->get_write_buffer_limits()));
    for (int i = 0; i < 3; ++i) co_await loop::sleep(0);
    say("drain still waits", !d.done());
    go.set_result();
    co_await d;
    say("drain returned");
    std::size_t n = co_await done;
    say("server got", n);
    // a high-water mark of 0: every write that is not sent whole pauses
    t->set_write_buffer_limits(0);
    w->write("");
    co_await w->drain();
    say("drain with nothing buffered returned");
    w->close();
    co_await w->wait_closed();
    pair.srv->close();
    co_await pair.srv->wait_closed();
  });
}

SCENARIO(stream_close_while_drain_waits_then_the_peer_reads) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto go = lp.create_future<void>();
    auto done = lp.create_future<std::size_t>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      co_await go;
      std::string got = co_await r->read();
      done.set_result(got.size());
      w->close();
      co_await w->wait_closed();
    };
    auto pair = co_await paused_writer_pair(handle);
    auto w = pair.w;
    w->write(std::string(kBig, 'z'));
    auto draining = [&]() -> loop::Coroutine<void> {
      try {
        co_await w->drain();
        say("drain returned");
      } catch (const std::exception& e) {
        say("drain raised", err(e));
      }
    };
    auto d = lp.create_task(draining());
    co_await loop::sleep(0);
    say("drain waits", !d.done());
    w->close();
    say("closed: is_closing", w->is_closing(), "buffered",
        w->transport()->get_write_buffer_size() > 0);
    for (int i = 0; i < 3; ++i) co_await loop::sleep(0);
    say("drain still waits", !d.done());
    go.set_result();
    co_await d;
    co_await w->wait_closed();
    say("wait_closed returned");
    std::size_t n = co_await done;
    say("server read", n);
    pair.srv->close();
    co_await pair.srv->wait_closed();
  });
}

SCENARIO(stream_close_while_drain_waits_then_the_peer_resets) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto go = lp.create_future<void>();
    auto done = lp.create_future<void>();
    auto handle = [&](Reader, Writer w) -> loop::Coroutine<void> {
      co_await go;
      // SO_LINGER 0, then abort(): a RST (unread data makes one anyway)
      linger_zero(fd_of(w));
      w->transport()->abort();
      done.set_result();
    };
    auto pair = co_await paused_writer_pair(handle);
    auto w = pair.w;
    w->write(std::string(kBig, 'z'));
    auto draining = [&]() -> loop::Coroutine<void> {
      try {
        co_await w->drain();
        say("drain returned");
      } catch (const std::exception& e) {
        say("drain raised", err(e));
      }
    };
    auto d = lp.create_task(draining());
    co_await loop::sleep(0);
    w->close();
    say("closed: is_closing", w->is_closing());
    go.set_result();
    co_await d;
    try {
      co_await w->wait_closed();
      say("wait_closed returned");
    } catch (const std::exception& e) {
      say("wait_closed raised", err(e));
    }
    say("buffered", w->transport()->get_write_buffer_size());
    co_await done;
    pair.srv->close();
    co_await pair.srv->wait_closed();
  });
}

// FlowControlMixin.connection_lost(None) wakes a paused drain with no error; the next drain
// raises ConnectionResetError.
SCENARIO(stream_abort_while_drain_waits) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<bool>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      std::string got = co_await r->read();  // what the kernel had taken before the abort
      done.set_result(0 < got.size() && got.size() < kBig);
      w->close();
      co_await w->wait_closed();
    };
    auto pair = co_await paused_writer_pair(handle);
    auto w = pair.w;
    w->write(std::string(kBig, 'z'));
    auto draining = [&]() -> loop::Coroutine<void> {
      try {
        co_await w->drain();
        say("drain returned");
      } catch (const std::exception& e) {
        say("drain raised", err(e));
      }
    };
    auto d = lp.create_task(draining());
    co_await loop::sleep(0);
    say("drain waits", !d.done());
    ticker(lp, 3);
    w->transport()->abort();
    say("aborted: is_closing", w->is_closing(), "buffered",
        w->transport()->get_write_buffer_size());
    co_await d;
    try {
      co_await w->drain();
      say("drain again returned");
    } catch (const std::system_error& e) {
      say("drain again raised", err(e));
    }
    co_await w->wait_closed();
    say("wait_closed returned");
    std::string got = co_await pair.r->read();
    say("client: read", B(got));
    bool less = co_await done;
    say("server: read less than was written", less);
    pair.srv->close();
    co_await pair.srv->wait_closed();
  });
}

SCENARIO(stream_peer_reset_while_drain_waits) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto go = lp.create_future<void>();
    auto done = lp.create_future<void>();
    auto handle = [&](Reader, Writer w) -> loop::Coroutine<void> {
      co_await go;
      linger_zero(fd_of(w));
      w->transport()->abort();
      done.set_result();
    };
    auto pair = co_await paused_writer_pair(handle);
    auto r = pair.r;
    auto w = pair.w;
    w->write(std::string(kBig, 'z'));
    auto draining = [&]() -> loop::Coroutine<void> {
      try {
        co_await w->drain();
        say("drain returned");
      } catch (const std::exception& e) {
        say("drain raised", err(e));
      }
    };
    auto d = lp.create_task(draining());
    co_await loop::sleep(0);
    say("drain waits", !d.done());
    go.set_result();
    co_await d;
    say("exception()", err(r->exception()), "is_closing", w->is_closing());
    try {
      co_await r->read();
    } catch (const std::system_error& e) {
      say("read raised", err(e));
    }
    try {
      co_await w->wait_closed();
    } catch (const std::system_error& e) {
      say("wait_closed raised", err(e));
    }
    say("buffered", w->transport()->get_write_buffer_size());
    co_await done;
    pair.srv->close();
    co_await pair.srv->wait_closed();
  });
}

SCENARIO(stream_lowering_the_high_water_mark_pauses_at_once) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto go = lp.create_future<void>();
    auto done = lp.create_future<std::size_t>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      co_await go;
      std::string got = co_await r->readexactly(kBig);
      done.set_result(got.size());
      w->close();
      co_await w->wait_closed();
    };
    auto pair = co_await paused_writer_pair(handle);
    auto w = pair.w;
    auto t = w->transport();
    t->set_write_buffer_limits(2 * kBig);
    w->write(std::string(kBig, 'z'));
    say("buffered", t->get_write_buffer_size() > 0);
    co_await w->drain();
    say("drain below the high-water mark returned");
    t->set_write_buffer_limits(1024);
    say("lowered to", limits(t->get_write_buffer_limits()));
    loop::Coroutine<void> drain_coro = w->drain();
    auto d = lp.create_task(std::move(drain_coro));
    for (int i = 0; i < 3; ++i) co_await loop::sleep(0);
    say("drain waits", !d.done());
    go.set_result();
    co_await d;
    say("drain returned; buffered <= 256", t->get_write_buffer_size() <= 256);
    std::size_t n = co_await done;
    say("server got", n);
    w->close();
    co_await w->wait_closed();
    pair.srv->close();
    co_await pair.srv->wait_closed();
  });
}

SCENARIO(stream_drain_cancelled_then_drain_again) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto go = lp.create_future<void>();
    auto done = lp.create_future<std::size_t>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      co_await go;
      std::string got = co_await r->readexactly(kBig);
      done.set_result(got.size());
      w->close();
      co_await w->wait_closed();
    };
    auto pair = co_await paused_writer_pair(handle);
    auto w = pair.w;
    w->write(std::string(kBig, 'z'));
    loop::Coroutine<void> drain1 = w->drain();
    auto d1 = lp.create_task(std::move(drain1));
    co_await loop::sleep(0);
    bool c = d1.cancel();
    say("cancel", c);
    try {
      co_await d1;
    } catch (const loop::CancelledError&) {
      say("first drain cancelled", d1.cancelled());
    }
    loop::Coroutine<void> drain2 = w->drain();
    auto d2 = lp.create_task(std::move(drain2));
    for (int i = 0; i < 3; ++i) co_await loop::sleep(0);
    say("second drain waits", !d2.done());
    go.set_result();
    co_await d2;
    say("second drain returned");
    std::size_t n = co_await done;
    say("server got", n);
    w->close();
    co_await w->wait_closed();
    pair.srv->close();
    co_await pair.srv->wait_closed();
  });
}

// close() with data buffered waits for it to be sent: a write() meanwhile joins the buffer.
SCENARIO(stream_write_after_close_with_data_buffered_is_still_sent) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto go = lp.create_future<void>();
    auto done = lp.create_future<std::pair<std::size_t, std::string>>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      co_await go;
      std::string got = co_await r->read();
      std::string tail = got.size() >= 11 ? got.substr(got.size() - 11) : got;
      done.set_result({got.size(), tail});
      w->close();
      co_await w->wait_closed();
    };
    auto pair = co_await paused_writer_pair(handle);
    auto w = pair.w;
    w->write(std::string(kBig, 'z'));
    w->close();
    w->write("after close");
    say("closing", w->is_closing(), "buffered", w->transport()->get_write_buffer_size() > 0);
    go.set_result();
    co_await w->wait_closed();
    say("wait_closed returned");
    auto [n, tail] = co_await done;
    say("server got", n, B(tail));
    pair.srv->close();
    co_await pair.srv->wait_closed();
  });
}

// asyncio 3.7 / 3.11: serve_forever's wait_closed() returns at once on a closed server; libloop
// does not wait for the connections there either (README).
SCENARIO(server_serve_forever_cancelled_with_a_live_connection_returns_at_once) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto connected = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      connected.set_result();
      std::string line = co_await r->readline();
      w->write("echo " + line);
      co_await w->drain();
      std::string rest = co_await r->read();
      say("server: read at EOF", B(rest));
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    auto t = lp.create_task(srv->serve_forever());
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port_of(srv));
    co_await connected;
    bool c = t.cancel();
    say("cancel", c);
    try {
      co_await t;
    } catch (const loop::CancelledError&) {
      say("serve_forever cancelled", t.cancelled(), "is_serving", srv->is_serving());
    }
    w->write("still open\n");
    std::string got = co_await r->readline();
    say("client: got", B(got));
    w->close();
    co_await w->wait_closed();
    co_await done;
    co_await srv->wait_closed();
    say("wait_closed returned");
  });
}

namespace {
// Python's repr() of a socket name: None, or the quoted host / path.
std::string name_repr(const std::any& a) {
  if (!a.has_value()) return "None";
  return "'" + std::any_cast<loop::SocketAddress>(a).host() + "'";
}

std::string name_str(const std::any& a) {
  return a.has_value() ? std::any_cast<loop::SocketAddress>(a).host() : std::string("<None>");
}
}  // namespace

// An unnamed unix socket's name is '' (not None); the server leaves its file behind (3.7 to
// 3.12; 3.13 removes it).
SCENARIO(stream_unix_extra_info_names) {
  std::string path = "/tmp/libloop-diff-servers-" + std::to_string(::getpid()) + ".sock";
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto view = lp.create_future<std::pair<std::any, std::any>>();
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      view.set_result({w->get_extra_info("sockname"), w->get_extra_info("peername")});
      co_await r->read();
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_unix_server(handle, path);
    say("server sockets", srv->sockets().size());
    auto [r, w] = co_await loop::open_unix_connection(path);
    std::any local = w->get_extra_info("sockname");
    std::any peer = w->get_extra_info("peername");
    say("client sockname", name_repr(local), "peername is the path", name_str(peer) == path);
    auto names = co_await view;
    say("server sockname is the path", name_str(names.first) == path, "peername",
        name_repr(names.second));
    w->close();
    co_await w->wait_closed();
    co_await done;
    srv->close();
    struct stat st;
    bool exists = ::stat(path.c_str(), &st) == 0;
    say("closed: sockets", srv->sockets().size(), "file still there", exists);
    co_await srv->wait_closed();
  });
  ::unlink(path.c_str());
}

// ---- Resets --------------------------------------------------------------------------------

SCENARIO(stream_reset_while_reading) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto connected = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      connected.set_result();
      try {
        co_await r->read(100);
      } catch (const std::system_error& e) {
        say("server: read raised", err(e));
      }
      say("server: exception()", err(r->exception()));
      say("server: at_eof", r->at_eof(), "is_closing", w->is_closing());
      try {
        co_await r->readline();
      } catch (const std::system_error& e) {
        say("server: readline raised", err(e));
      }
      try {
        co_await w->drain();
      } catch (const std::system_error& e) {
        say("server: drain raised", err(e));
      }
      try {
        co_await w->wait_closed();
      } catch (const std::system_error& e) {
        say("server: wait_closed raised", err(e));
      }
      w->close();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    int s = blocking_client(port_of(srv));
    co_await connected;
    co_await loop::sleep(0);
    reset_and_close(s);
    co_await done;
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(stream_reset_while_waiting_closed) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto connected = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      connected.set_result();
      say("server: exception() before", err(r->exception()));
      try {
        co_await w->wait_closed();
        say("server: wait_closed returned");
      } catch (const std::system_error& e) {
        say("server: wait_closed raised", err(e));
      }
      say("server: exception()", err(r->exception()));
      try {
        co_await r->read();
      } catch (const std::system_error& e) {
        say("server: read() raised", err(e));
      }
      try {
        co_await w->wait_closed();
      } catch (const std::system_error& e) {
        say("server: wait_closed again raised", err(e));
      }
      say("server: is_closing", w->is_closing());
      w->close();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    int s = blocking_client(port_of(srv));
    co_await connected;
    co_await loop::sleep(0);
    reset_and_close(s);
    co_await done;
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(stream_reader_protocol_connection_lost_with_an_exception) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto r = std::make_shared<loop::StreamReader>(lp);
    auto p = std::make_shared<loop::StreamReaderProtocol>(lp, r);
    auto reading = [&]() -> loop::Coroutine<void> {
      try {
        co_await r->read(10);
      } catch (const std::invalid_argument& e) {
        say_exc("pending read raised", e);
      }
    };
    auto t = lp.create_task(reading());
    co_await loop::sleep(0);
    p->connection_lost(std::make_exception_ptr(std::invalid_argument("lost")));
    say("connection_lost returned; read done", t.done());
    co_await t;
    try {
      std::rethrow_exception(r->exception());
    } catch (const std::invalid_argument& e) {
      say_exc("exception()", e);
    }
    try {
      co_await r->read();
    } catch (const std::invalid_argument& e) {
      say_exc("read() raised", e);
    }
    say("at_eof", r->at_eof());

    auto r2 = std::make_shared<loop::StreamReader>(lp);
    auto p2 = std::make_shared<loop::StreamReaderProtocol>(lp, r2);
    p2->data_received("left over");
    bool keep = p2->eof_received();
    say("eof_received returns", keep);
    p2->connection_lost(nullptr);
    say("exception()", err(r2->exception()));
    std::string got = co_await r2->read();
    say("read()", B(got));
    say("at_eof", r2->at_eof());
  });
}

// ---- The writer's other methods ----------------------------------------------------------------

SCENARIO(stream_writer_extra_info_and_is_closing) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto server_view = lp.create_future<std::pair<loop::SocketAddress, loop::SocketAddress>>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      server_view.set_result({addr_info(w, "sockname"), addr_info(w, "peername")});
      co_await r->read();
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    int port = port_of(srv);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
    loop::SocketAddress peer = addr_info(w, "peername");
    loop::SocketAddress local = addr_info(w, "sockname");
    say("client peername", peer.host(), peer.port() == port);
    say("client sockname", local.host());
    auto view = co_await server_view;
    say("server sockname is the client's peername", view.first == peer);
    say("server peername is the client's sockname", view.second == local);
    say("socket present", w->get_extra_info("socket").has_value());
    std::any none = w->get_extra_info("no-such-key");
    std::any dflt = w->get_extra_info("no-such-key", std::string("dflt"));
    say("unknown key", none.has_value() ? "?" : "None", std::any_cast<std::string>(dflt));
    say("is_closing", w->is_closing());
    w->write_eof();
    say("after write_eof: is_closing", w->is_closing());
    try {
      w->write("late");
    } catch (const std::runtime_error& e) {
      say_exc("write after write_eof:", e);
    }
    co_await done;
    std::string got = co_await r->read();
    say("after the peer closed: is_closing", w->is_closing(), "read", B(got));
    w->close();
    say("after close: is_closing", w->is_closing());
    peer = addr_info(w, "peername");
    say("peername after close", peer.host(), peer.port() == port);
    co_await w->wait_closed();
    say("after wait_closed: is_closing", w->is_closing());
    srv->close();
    co_await srv->wait_closed();
  });
}

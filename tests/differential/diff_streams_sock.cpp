// Differential scenarios of streams, the sock_* coroutines and add_reader/add_writer
// (the asyncio half: diff_streams_sock.py).
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <functional>
#include <loop/loop.hpp>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "scenario.hpp"

using diff::B;
using diff::say;

namespace {

std::string opt(const std::optional<std::size_t>& v) {
  return v ? std::to_string(*v) : std::string("None");
}

void say_exc(const std::string& what, const std::exception& e) {
  say(what, diff::exception_name(e), e.what());
}

// Runs body(lp) on a new loop until done, then closes the loop.
template <class F>
void run(F body) {
  loop::EventLoop lp;
  lp.run_until_complete(body(lp));
  lp.close();
}

struct SocketPair {
  int a = -1, b = -1;
  SocketPair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0)
      throw std::runtime_error("socketpair");
    a = fds[0];
    b = fds[1];
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
  ~SocketPair() {
    close_a();
    close_b();
  }
  void close_a() {
    if (a >= 0) ::close(a);
    a = -1;
  }
  void close_b() {
    if (b >= 0) ::close(b);
    b = -1;
  }
};

void send_now(int fd, std::string_view data) {
  if (::send(fd, data.data(), data.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(data.size()))
    throw std::runtime_error("send");
}

// A non-blocking recv; nullopt when nothing is there (Python's BlockingIOError).
std::optional<std::string> try_recv(int fd, std::size_t n = 100) {
  std::string buf(n, '\0');
  ssize_t got = ::recv(fd, buf.data(), n, MSG_DONTWAIT);
  if (got < 0) return std::nullopt;
  buf.resize(static_cast<std::size_t>(got));
  return buf;
}

std::string recv_now(int fd, std::size_t n = 100) {
  auto got = try_recv(fd, n);
  if (!got) throw std::runtime_error("recv would block");
  return *got;
}

void tick(loop::EventLoop* lp, int i, int n, bool stop) {
  say("tick", i);
  if (i < n)
    lp->call_soon(&tick, lp, i + 1, n, stop);
  else if (stop)
    lp->stop();
}

// Says 'tick 1' .. 'tick n', one per iteration, from the next iteration on; stops the loop at
// the last one if `stop`.
void ticker(loop::EventLoop& lp, int n, bool stop = false) {
  lp.call_soon(&tick, &lp, 1, n, stop);
}

int server_port(const std::shared_ptr<loop::Server>& srv) {
  return srv->sockets().at(0).port();
}

using Reader = std::shared_ptr<loop::StreamReader>;
using Writer = std::shared_ptr<loop::StreamWriter>;

}  // namespace

// ---- StreamReader on its own (feed_data / feed_eof without a transport) ----------------------

SCENARIO(reader_alone_read_returns_what_is_buffered) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto r = std::make_shared<loop::StreamReader>(lp);
    auto feed = [r](std::string d) {
      say("feed", B(d));
      r->feed_data(d);
    };
    auto eof = [r] {
      say("feed_eof");
      r->feed_eof();
    };
    lp.call_soon(feed, std::string("ab"));
    lp.call_soon(feed, std::string("cd"));
    std::string got = co_await r->read(3);
    say("read(3)", B(got));
    got = co_await r->read(3);
    say("read(3)", B(got));
    got = co_await r->read(0);
    say("read(0)", B(got));
    lp.call_soon(feed, std::string("ef"));
    lp.call_soon(feed, std::string("gh"));
    lp.call_soon(eof);
    got = co_await r->read(-1);
    say("read(-1)", B(got));
    say("at_eof", r->at_eof());
    got = co_await r->read(3);
    say("read(3) at eof", B(got));
    got = co_await r->read(-1);
    say("read(-1) at eof", B(got));
  });
}

SCENARIO(reader_alone_readexactly_across_iterations) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto r = std::make_shared<loop::StreamReader>(lp);
    std::function<void(std::vector<std::string>)> chain = [&](std::vector<std::string> pieces) {
      if (!pieces.empty()) {
        say("feed", B(pieces[0]));
        r->feed_data(pieces[0]);
        lp.call_soon(chain, std::vector<std::string>(pieces.begin() + 1, pieces.end()));
      } else {
        say("chain done");
      }
    };
    lp.call_soon(chain, std::vector<std::string>{"ab", "cd", "ef", "gh"});
    std::string got = co_await r->readexactly(5);
    say("readexactly(5)", B(got));
    got = co_await r->read(10);
    say("read(10)", B(got));
    got = co_await r->readexactly(0);
    say("readexactly(0)", B(got));
    got = co_await r->readexactly(2);
    say("readexactly(2)", B(got));
  });
}

SCENARIO(reader_alone_incomplete_read_errors) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto r = std::make_shared<loop::StreamReader>(lp);
    r->feed_data("abc");
    lp.call_soon([r] { r->feed_eof(); });
    try {
      co_await r->readexactly(5);
    } catch (const loop::IncompleteReadError& e) {
      say_exc("readexactly(5):", e);
      say("partial", B(e.partial), "expected", opt(e.expected));
    }
    say("at_eof", r->at_eof());
    std::string got = co_await r->read();
    say("read()", B(got));
    try {
      co_await r->readexactly(1);
    } catch (const loop::IncompleteReadError& e) {
      say_exc("readexactly(1):", e);
      say("partial", B(e.partial), "expected", opt(e.expected));
    }
    // readuntil expects no number: expected is None, "undefined" in the message
    r = std::make_shared<loop::StreamReader>(lp);
    r->feed_data("abc-");
    r->feed_eof();
    try {
      co_await r->readuntil("");
    } catch (const std::invalid_argument& e) {
      say_exc("readuntil(b''):", e);
    }
    try {
      co_await r->readuntil("--");
    } catch (const loop::IncompleteReadError& e) {
      say_exc("readuntil(b'--'):", e);
      say("partial", B(e.partial), "expected", opt(e.expected));
    }
    say("at_eof", r->at_eof());
  });
}

SCENARIO(reader_alone_readuntil_separator_split_across_feeds) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto r = std::make_shared<loop::StreamReader>(lp);
    std::function<void(std::string, std::optional<std::string>)> feed =
        [&](std::string d, std::optional<std::string> then) {
          say("feed", B(d));
          r->feed_data(d);
          if (then) lp.call_soon(feed, *then, std::optional<std::string>());
        };
    lp.call_soon(feed, std::string("ab-"), std::optional<std::string>("-cd-"));
    std::string got = co_await r->readuntil("--");
    say("readuntil(b'--')", B(got));
    lp.call_soon(feed, std::string("-"), std::optional<std::string>());
    got = co_await r->readuntil("--");
    say("readuntil(b'--')", B(got));
    lp.call_soon(feed, std::string("x\r"), std::optional<std::string>("\ny"));
    got = co_await r->readuntil("\r\n");
    say("readuntil(b'\\r\\n')", B(got));
    got = co_await r->read(10);
    say("read(10)", B(got));
  });
}

SCENARIO(reader_alone_limit_overrun_separator_not_found_keeps_data) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto r = std::make_shared<loop::StreamReader>(lp, 4);
    auto feed = [r](std::string d) {
      say("feed", B(d));
      r->feed_data(d);
    };
    lp.call_soon(feed, std::string("abc"));
    lp.call_soon([&lp, feed] { lp.call_soon(feed, std::string("defgh")); });
    try {
      co_await r->readuntil("\n");
    } catch (const loop::LimitOverrunError& e) {
      say_exc("readuntil:", e);
      say("consumed", e.consumed);
    }
    std::string got = co_await r->read(100);
    say("read(100)", B(got));
  });
}

SCENARIO(reader_alone_readline_drops_an_overlong_line) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto r = std::make_shared<loop::StreamReader>(lp, 4);
    r->feed_data("abcdefg\nxy\n");
    try {
      co_await r->readuntil("\n");
    } catch (const loop::LimitOverrunError& e) {
      say_exc("readuntil:", e);
      say("consumed", e.consumed);
    }
    try {
      co_await r->readline();
    } catch (const std::invalid_argument& e) {
      say_exc("readline:", e);
    }
    std::string got = co_await r->readline();
    say("readline", B(got));
    // exactly at the limit: the separator at index 4 is still accepted
    r->feed_data("abcd\n");
    got = co_await r->readline();
    say("readline (limit-long line)", B(got));
    // no newline within the limit: readline drops everything buffered
    r->feed_data("abcdefgh");
    try {
      co_await r->readline();
    } catch (const std::invalid_argument& e) {
      say_exc("readline:", e);
    }
    lp.call_soon([r] { r->feed_data("z\nrest"); });
    got = co_await r->readline();
    say("readline", B(got));
    got = co_await r->read(10);
    say("read(10)", B(got));
  });
}

SCENARIO(reader_alone_second_waiter_is_refused) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto r = std::make_shared<loop::StreamReader>(lp);
    auto first = [r]() -> loop::Coroutine<void> {
      std::string got = co_await r->read(10);
      say("first got", B(got));
    };
    auto t = lp.create_task(first());
    co_await loop::sleep(0);
    try {
      co_await r->read(5);
    } catch (const std::runtime_error& e) {
      say_exc("read:", e);
    }
    try {
      co_await r->readline();
    } catch (const std::runtime_error& e) {
      say_exc("readline:", e);
    }
    try {
      co_await r->readexactly(2);
    } catch (const std::runtime_error& e) {
      say_exc("readexactly:", e);
    }
    try {
      co_await r->readuntil("-");
    } catch (const std::runtime_error& e) {
      say_exc("readuntil:", e);
    }
    r->feed_data("data");
    co_await t;
    say("done");
  });
}

SCENARIO(reader_alone_woken_reader_loses_data_to_a_task_scheduled_first) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto r = std::make_shared<loop::StreamReader>(lp);
    std::vector<loop::Task<void>> tasks;
    auto reader = [r](std::string name) -> loop::Coroutine<void> {
      say(name, "reads");
      std::string got = co_await r->read(10);
      say(name, "got", B(got));
    };
    tasks.push_back(lp.create_task(reader("A")));
    co_await loop::sleep(0);
    lp.call_soon([&] {
      tasks.push_back(lp.create_task(reader("B")));
      say("feed_data");
      r->feed_data("data");
    });
    co_await loop::sleep(0);
    co_await loop::sleep(0);
    for (auto& t : tasks) co_await t;
    say("at_eof", r->at_eof());
  });
}

SCENARIO(reader_alone_set_exception_wakes_and_sticks) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto r = std::make_shared<loop::StreamReader>(lp);
    auto waiting = [r]() -> loop::Coroutine<void> {
      try {
        co_await r->readline();
      } catch (const std::invalid_argument& e) {
        say_exc("waiting readline:", e);
      }
    };
    auto t = lp.create_task(waiting());
    co_await loop::sleep(0);
    r->feed_data("buffered\n");
    r->set_exception(std::make_exception_ptr(std::invalid_argument("boom")));
    say("set_exception done");
    co_await t;
    try {
      std::string got = co_await r->read(0);
      say("read(0)", B(got));
    } catch (const std::invalid_argument& e) {
      say_exc("read(0):", e);
    }
    try {
      std::string got = co_await r->readline();
      say("readline", B(got));
    } catch (const std::invalid_argument& e) {
      say_exc("readline:", e);
    }
    try {
      std::string got = co_await r->readexactly(1);
      say("readexactly(1)", B(got));
    } catch (const std::invalid_argument& e) {
      say_exc("readexactly(1):", e);
    }
    try {
      std::rethrow_exception(r->exception());
    } catch (const std::exception& e) {
      say("exception:", diff::exception_name(e), e.what());
    }
    say("at_eof", r->at_eof());
  });
}

// ---- Streams over connections ------------------------------------------------------------------

SCENARIO(stream_open_connection_on_connected_sock_vs_cb) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      say("server: client_connected_cb");
      std::string got = co_await r->read(100);
      say("server: read", B(got));
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    int port = server_port(srv);
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // blocking: connected on return
    auto addr = loop::SocketAddress::from_ip("127.0.0.1", static_cast<unsigned short>(port));
    if (::connect(s, addr.data(), addr.size()) != 0) throw std::runtime_error("connect");
    ::fcntl(s, F_SETFL, ::fcntl(s, F_GETFL) | O_NONBLOCK);
    say("socket connected");
    lp.call_soon([] { say("call_soon before open_connection"); });
    loop::ConnectionOptions options;
    options.sock = s;
    auto [r, w] = co_await loop::open_connection("", 0, options);
    say("client: open_connection returned");
    w->write("x");
    std::string got = co_await r->read();
    say("client: read at EOF", B(got));
    w->close();
    co_await w->wait_closed();
    co_await done;
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(stream_reading_after_the_peer_closed) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handle = [&](Reader, Writer w) -> loop::Coroutine<void> {
      w->write("bye\npartial");
      w->close();
      co_await w->wait_closed();
      say("server: closed");
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    int port = server_port(srv);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
    co_await done;
    std::string got = co_await r->readline();
    say("client: readline", B(got));
    say("client: at_eof", r->at_eof());
    try {
      co_await r->readexactly(10);
    } catch (const loop::IncompleteReadError& e) {
      say_exc("client: readexactly(10):", e);
      say("partial", B(e.partial));
    }
    say("client: at_eof", r->at_eof());
    got = co_await r->readline();
    say("client: readline", B(got));
    got = co_await r->read();
    say("client: read()", B(got));
    say("client: is_closing", w->is_closing());
    w->close();
    say("client: is_closing after close", w->is_closing());
    co_await w->wait_closed();
    say("client: closed");
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(stream_write_eof_half_close) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto client_done = lp.create_future<void>();
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      std::string data = co_await r->read();
      say("server: read() until EOF", B(data));
      say("server: at_eof", r->at_eof(), "is_closing", w->is_closing());
      w->write(std::string(data.rbegin(), data.rend()));
      co_await w->drain();
      w->write_eof();
      say("server: wrote and write_eof, is_closing", w->is_closing());
      co_await client_done;
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    int port = server_port(srv);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
    say("client: can_write_eof", w->can_write_eof());
    w->write("ping");
    w->writelines({"-", "po", "ng"});
    w->write_eof();
    say("client: write_eof, is_closing", w->is_closing());
    std::string got = co_await r->read();
    say("client: read()", B(got));
    say("client: at_eof", r->at_eof(), "is_closing", w->is_closing());
    w->close();
    co_await w->wait_closed();
    say("client: closed");
    client_done.set_result();
    co_await done;
    say("server: closed");
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(stream_close_then_drain_and_wait_closed) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      std::string got = co_await r->read();
      say("server: read", B(got));
      say("server: at_eof", r->at_eof());
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    int port = server_port(srv);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
    w->write("last words");
    co_await w->drain();
    say("client: drain before close returned");
    w->close();
    say("client: is_closing", w->is_closing());
    try {
      co_await w->drain();
      say("client: drain after close returned");
    } catch (const std::system_error& e) {
      say("client: drain after close:", diff::exception_name(e));
    }
    co_await w->wait_closed();
    say("client: wait_closed returned");
    co_await w->wait_closed();
    say("client: wait_closed again returned");
    std::string got = co_await r->read();
    say("client: read() after close", B(got));
    co_await done;
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(stream_close_flushes_buffered_data) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<std::pair<std::size_t, bool>>();
    std::string payload;
    for (int i = 0; i < 16384; ++i)
      for (int c = 0; c < 256; ++c) payload += static_cast<char>(c);  // 4 MiB
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      std::string data = co_await r->read();
      w->close();
      co_await w->wait_closed();
      done.set_result(std::pair<std::size_t, bool>(data.size(), data == payload));
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    int port = server_port(srv);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
    w->write(payload);
    w->close();
    say("client: is_closing", w->is_closing());
    co_await w->wait_closed();
    say("client: wait_closed returned, buffer", w->transport()->get_write_buffer_size());
    auto [n, intact] = co_await done;
    say("server: got", n, "bytes, intact", intact);
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(stream_unix_server_and_connection) {
  std::string path = "/tmp/libloop-diff-streams-" + std::to_string(::getpid()) + ".sock";
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      say("server: client_connected_cb");
      std::string msg = co_await r->readuntil("\r\n");
      say("server: readuntil", B(msg));
      w->writelines({"got ", msg});
      co_await w->drain();
      std::string rest = co_await r->read();
      say("server: read() at EOF", B(rest));
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_unix_server(handle, path);
    struct stat st;
    say("listening on the path", ::stat(path.c_str(), &st) == 0);
    auto [r, w] = co_await loop::open_unix_connection(path);
    say("client: open_unix_connection returned");
    w->write("hi\r");
    co_await loop::sleep(0);
    w->write("\nthere");
    std::string got = co_await r->readline();
    say("client: readline", B(got));
    say("client: can_write_eof", w->can_write_eof());
    w->close();
    co_await w->wait_closed();
    co_await done;
    got = co_await r->read();
    say("client: read() after close", B(got));
    srv->close();
    co_await srv->wait_closed();
  });
  ::unlink(path.c_str());
}

SCENARIO(stream_server_reader_sees_client_close) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      std::string got = co_await r->read(100);
      say("server: read(100)", B(got));
      got = co_await r->read(100);
      say("server: read(100)", B(got));
      say("server: at_eof", r->at_eof());
      got = co_await r->readline();
      say("server: readline", B(got));
      w->close();
      co_await w->wait_closed();
      say("server: closed");
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    int port = server_port(srv);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
    w->write("last");
    w->close();
    co_await w->wait_closed();
    say("client: closed");
    co_await done;
    srv->close();
    co_await srv->wait_closed();
  });
}

// asyncio's create_server resolves each host in a task under gather(), then skips one
// iteration; open_connection: sock_connect, then the transport's waiter.
SCENARIO(stream_start_server_and_open_connection_iterations) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    ticker(lp, 12);
    auto done = lp.create_future<void>();
    auto handle = [&](Reader, Writer w) -> loop::Coroutine<void> {
      say("server: client_connected_cb");
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    auto srv = co_await loop::start_server(handle, "127.0.0.1", 0);
    say("start_server returned");
    int port = server_port(srv);
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
    say("open_connection returned");
    co_await done;
    w->close();
    co_await w->wait_closed();
    srv->close();
    co_await srv->wait_closed();
  });
}

// The server's callback writes in the iteration in which open_connection returns; the client's
// socket was not readable at that iteration's poll, so its data_received waits for the next poll.
void data_sent_after_the_poll(bool unix) {
  std::string path = "/tmp/libloop-diff-streams-early-" + std::to_string(::getpid()) + ".sock";
  run([&](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto handle = [&](Reader r, Writer w) -> loop::Coroutine<void> {
      say("server: client_connected_cb writes");
      w->write("early");
      co_await r->read();
      w->close();
      co_await w->wait_closed();
      done.set_result();
    };
    std::function<void(int)> soon = [&](int i) {
      say("soon", i);
      if (i < 3) lp.call_soon(soon, i + 1);
    };
    std::shared_ptr<loop::Server> srv;
    loop::StreamPair pair;
    if (unix) {
      srv = co_await loop::start_unix_server(handle, path);
      pair = co_await loop::open_unix_connection(path);
    } else {
      srv = co_await loop::start_server(handle, "127.0.0.1", 0);
      pair = co_await loop::open_connection("127.0.0.1", server_port(srv));
    }
    auto [r, w] = pair;
    say("client: connected");
    lp.call_soon(soon, 1);
    std::string got = co_await r->read(100);
    say("client: read", B(got));
    co_await loop::sleep(0);
    co_await loop::sleep(0);
    w->close();
    co_await w->wait_closed();
    co_await done;
    srv->close();
    co_await srv->wait_closed();
  });
  ::unlink(path.c_str());
}

SCENARIO(stream_tcp_data_sent_after_the_poll_is_read_at_the_next_poll) {
  data_sent_after_the_poll(false);
}

SCENARIO(stream_unix_data_sent_after_the_poll_is_read_at_the_next_poll) {
  data_sent_after_the_poll(true);
}

// ---- The sock_* coroutines ----------------------------------------------------------------------

SCENARIO(sock_ops_with_data_ready_do_not_suspend) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    SocketPair p;
    send_now(p.b, "ready");
    lp.call_soon([] { say("call_soon scheduled before the recv"); });
    std::string got = co_await lp.sock_recv(p.a, 100);
    say("sock_recv", B(got));
    send_now(p.b, "into");
    lp.call_soon([] { say("call_soon scheduled before the recv_into"); });
    char buf[10];
    std::size_t n = co_await lp.sock_recv_into(p.a, std::span<char>(buf, sizeof buf));
    say("sock_recv_into", n, B(std::string_view(buf, n)));
    lp.call_soon([] { say("call_soon scheduled before the sendall"); });
    co_await lp.sock_sendall(p.a, "sent");
    say("sock_sendall returned; peer has", B(recv_now(p.b)));
    co_await loop::sleep(0);
    say("after sleep(0)");
  });
}

SCENARIO(sock_recv_waits_then_resumes_two_iterations_after_the_data) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    SocketPair p;
    std::function<void(int)> tick6 = [&](int i) {
      say("tick", i);
      if (i == 2) {
        say("send");
        send_now(p.b, "x");
      }
      if (i < 6) lp.call_soon(tick6, i + 1);
    };
    lp.call_soon(tick6, 1);
    say("sock_recv waits");
    std::string got = co_await lp.sock_recv(p.a, 10);
    say("sock_recv", B(got));
    co_await loop::sleep(0);
    co_await loop::sleep(0);
    co_await loop::sleep(0);
  });
}

// asyncio's _sock_recv calls recv() in the reader callback: what is sent after that callback in
// the same iteration (here by a due timer) is left for the next recv.
SCENARIO(sock_recv_receives_in_the_fd_callback) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    SocketPair p;
    auto receiver = [&]() -> loop::Coroutine<void> {
      std::string got = co_await lp.sock_recv(p.a, 100);
      say("receiver got", B(got));
    };
    auto t = lp.create_task(receiver());
    co_await loop::sleep(0);
    say("send one");
    send_now(p.b, "one");
    lp.call_later(0, [&] {
      say("timer sends two");
      send_now(p.b, "two");
    });
    co_await t;
    if (auto left = try_recv(p.a))
      say("left in the socket", B(*left));
    else
      say("left in the socket: nothing");
  });
}

SCENARIO(sock_recv_on_a_closed_peer_is_empty) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    SocketPair p;
    send_now(p.b, "tail");
    p.close_b();
    std::string got = co_await lp.sock_recv(p.a, 100);
    say("sock_recv", B(got));
    got = co_await lp.sock_recv(p.a, 100);
    say("sock_recv", B(got));
    char buf[4];
    std::size_t n = co_await lp.sock_recv_into(p.a, std::span<char>(buf, sizeof buf));
    say("sock_recv_into", n);
    p.close_a();

    SocketPair q;
    auto receiver = [&]() -> loop::Coroutine<void> {
      std::string got = co_await lp.sock_recv(q.a, 100);
      say("waiting receiver got", B(got));
    };
    auto t = lp.create_task(receiver());
    co_await loop::sleep(0);
    say("close the peer");
    q.close_b();
    co_await t;
  });
}

SCENARIO(sock_recv_concurrent_on_two_sockets) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    SocketPair p1, p2;
    auto receiver = [&](std::string name, int sock) -> loop::Coroutine<void> {
      say(name, "waits");
      std::string got = co_await lp.sock_recv(sock, 100);
      say(name, "got", B(got));
    };
    for (int round = 0; round < 2; ++round) {
      bool two_first = round == 0;
      auto t1 = lp.create_task(receiver("r1", p1.a));
      auto t2 = lp.create_task(receiver("r2", p2.a));
      co_await loop::sleep(0);
      say("send to", two_first ? "2" : "1", "then the other");
      if (two_first) {
        send_now(p2.b, "data-2");
        send_now(p1.b, "data-1");
      } else {
        send_now(p1.b, "data-1");
        send_now(p2.b, "data-2");
      }
      co_await t1;
      co_await t2;
    }
  });
}

SCENARIO(sock_accept_connect_sendall_over_tcp) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    loop::Socket lst = loop::Socket::create(AF_INET);
    lst.bind(loop::SocketAddress::from_ip("127.0.0.1", 0));
    lst.listen(10);
    loop::SocketAddress addr = lst.getsockname();
    auto acceptor = [&]() -> loop::Coroutine<std::pair<int, loop::SocketAddress>> {
      say("accept waits");
      auto accepted = co_await lp.sock_accept(lst);
      bool nonblocking = (::fcntl(accepted.first, F_GETFL) & O_NONBLOCK) != 0;
      say("accepted from", accepted.second.host(), "blocking", !nonblocking);
      co_return accepted;
    };
    auto t = lp.create_task(acceptor());
    co_await loop::sleep(0);
    loop::Socket c = loop::Socket::create(AF_INET);
    say("connect");
    co_await lp.sock_connect(c, addr);
    say("connected");
    auto accepted = co_await t;
    loop::Socket conn(accepted.first);
    say("peer port is the client's", accepted.second.port() == c.getsockname().port());
    co_await lp.sock_sendall(c, "hello over tcp");
    std::string got = co_await lp.sock_recv(conn, 100);
    say("server recv", B(got));
    co_await lp.sock_sendall(conn, "reply");
    ::shutdown(conn, SHUT_WR);
    got = co_await lp.sock_recv(c, 100);
    say("client recv", B(got));
    got = co_await lp.sock_recv(c, 100);
    say("client recv", B(got));
  });
}

SCENARIO(sock_recv_cancelled_keeps_the_data_for_the_next) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    SocketPair p;
    auto receiver = [&]() -> loop::Coroutine<std::string> {
      co_return co_await lp.sock_recv(p.a, 100);
    };
    auto t = lp.create_task(receiver());
    co_await loop::sleep(0);
    say("cancel", t.cancel());
    try {
      co_await t;
    } catch (const loop::CancelledError&) {
      say("receiver cancelled", t.cancelled());
    }
    send_now(p.b, "after");
    co_await loop::sleep(0);
    co_await loop::sleep(0);
    std::string got = co_await lp.sock_recv(p.a, 100);
    say("next sock_recv", B(got));
  });
}

// ---- add_reader / add_writer / remove_reader / remove_writer ------------------------------------

SCENARIO(fd_callback_runs_between_call_soon_and_due_timers) {
  loop::EventLoop lp;
  SocketPair p;
  lp.add_reader(p.a, [&] {
    say("reader", B(recv_now(p.a)));
    lp.call_soon([] { say("soon from the reader"); });
    say("remove_reader", lp.remove_reader(p.a));
  });
  lp.call_soon([&] {
    say("start: send, call_later(0), call_soon");
    send_now(p.b, "x");
    lp.call_later(0, [] { say("timer 0"); });
    lp.call_soon([] { say("soon"); });
  });
  ticker(lp, 4, true);
  lp.run_forever();
  lp.close();
}

SCENARIO(fd_reader_is_level_triggered) {
  loop::EventLoop lp;
  SocketPair p;
  int calls = 0;
  send_now(p.b, "unread");
  lp.add_reader(p.a, [&] {
    ++calls;
    say("reader call", calls);
    if (calls == 3) say("reader reads", B(recv_now(p.a)));
  });
  ticker(lp, 6, true);
  lp.run_forever();
  say("remove_reader", lp.remove_reader(p.a));
  lp.close();
}

SCENARIO(fd_add_reader_again_replaces_the_callback) {
  loop::EventLoop lp;
  SocketPair p;
  int fd = p.a;
  std::function<void()> r3 = [&] {
    say("r3 reads", B(recv_now(fd)));
    say("remove_reader", lp.remove_reader(fd));
    say("remove_reader again", lp.remove_reader(fd));
    lp.stop();
  };
  lp.add_reader(fd, [] { say("r1 (replaced: must not run)"); });
  lp.add_reader(fd, [&] {
    say("r2 runs; replaces itself with r3");
    lp.add_reader(fd, r3);
  });
  send_now(p.b, "data");
  lp.run_forever();
  lp.close();
}

SCENARIO(fd_remove_reader_whose_event_is_pending_in_the_same_iteration) {
  loop::EventLoop lp;
  SocketPair p1, p2;
  lp.add_reader(p1.a, [&] {
    say("r1 reads", B(recv_now(p1.a)));
    say("r1: remove_reader(a2)", lp.remove_reader(p2.a));
    say("r1: remove_reader(a1)", lp.remove_reader(p1.a));
  });
  lp.add_reader(p2.a, [] { say("r2 (removed: must not run)"); });
  lp.call_soon([&] {
    send_now(p1.b, "1");
    send_now(p2.b, "2");
  });
  ticker(lp, 4, true);
  lp.run_forever();
  say("a2 still unread", B(recv_now(p2.a)));
  lp.close();
}

SCENARIO(fd_replace_reader_whose_event_is_pending_in_the_same_iteration) {
  loop::EventLoop lp;
  SocketPair p1, p2;
  std::function<void()> r2_new = [&] {
    say("r2_new reads", B(recv_now(p2.a)));
    say("remove_reader", lp.remove_reader(p2.a));
  };
  lp.add_reader(p1.a, [&] {
    say("r1 reads", B(recv_now(p1.a)));
    lp.remove_reader(p1.a);
    say("r1: add_reader(a2, r2_new)");
    lp.add_reader(p2.a, r2_new);
    lp.call_soon([] { say("soon from r1"); });
  });
  lp.add_reader(p2.a, [] { say("r2_old (replaced: must not run)"); });
  lp.call_soon([&] {
    send_now(p1.b, "1");
    send_now(p2.b, "2");
  });
  ticker(lp, 4, true);
  lp.run_forever();
  lp.close();
}

SCENARIO(fd_remove_and_add_again_in_the_same_callback) {
  loop::EventLoop lp;
  SocketPair p;
  int fd = p.a;
  int calls = 0;
  std::function<void()> reader = [&] {
    ++calls;
    say("reader call", calls);
    if (calls == 1) {
      say("remove_reader", lp.remove_reader(fd));
      lp.add_reader(fd, reader);
      say("added again");
    } else {
      say("reads", B(recv_now(fd)));
      say("remove_reader", lp.remove_reader(fd));
    }
  };
  send_now(p.b, "z");
  lp.add_reader(fd, reader);
  ticker(lp, 4, true);
  lp.run_forever();
  lp.close();
}

SCENARIO(fd_remove_return_values) {
  loop::EventLoop lp;
  SocketPair p;
  int fd = p.a;
  say("remove_reader (never added)", lp.remove_reader(fd));
  say("remove_writer (never added)", lp.remove_writer(fd));
  lp.add_reader(fd, [] {});
  say("remove_writer (only a reader)", lp.remove_writer(fd));
  say("remove_reader", lp.remove_reader(fd));
  say("remove_reader again", lp.remove_reader(fd));
  lp.add_writer(fd, [] {});
  lp.add_reader(fd, [] {});
  say("remove_writer (both)", lp.remove_writer(fd));
  say("remove_writer again", lp.remove_writer(fd));
  say("remove_reader (both were)", lp.remove_reader(fd));
  lp.add_reader(fd, [] {});
  lp.close();
  say("remove_reader on a closed loop", lp.remove_reader(fd));
  say("remove_writer on a closed loop", lp.remove_writer(fd));
  try {
    lp.add_reader(fd, [] {});
  } catch (const std::runtime_error& e) {
    say_exc("add_reader on a closed loop:", e);
  }
}

SCENARIO(fd_reader_runs_before_writer_of_the_same_fd) {
  loop::EventLoop lp;
  SocketPair p;
  int fd = p.a;
  send_now(p.b, "r");
  lp.add_writer(fd, [&] { say("writer; remove_writer", lp.remove_writer(fd)); });
  lp.add_reader(fd, [&] {
    std::string got = recv_now(fd);
    say("reader", B(got), "; remove_reader", lp.remove_reader(fd));
  });
  lp.call_soon([] { say("soon"); });
  ticker(lp, 3, true);
  lp.run_forever();
  lp.close();
}

// Both fds become readable before the next poll; a2's reader was added before its data came,
// a1's reader only after its data came (a1 had a reader once, removed since). In which order
// they run is the kernel's ready list: asyncio unregisters a1 and registers it again (a1 comes
// after a2), libloop keeps an unwatched fd registered (a1 keeps its place; README, "departs
// from asyncio on purpose"). So the order is not printed.
SCENARIO(fd_reader_added_after_its_data_arrived_runs) {
  loop::EventLoop lp;
  SocketPair p1, p2;
  int done = 0;
  std::vector<std::string> ran;
  std::function<void()> r1 = [&] {
    ran.push_back("r1 " + B(recv_now(p1.a)));
    lp.remove_reader(p1.a);
    if (++done == 2) lp.stop();
  };
  std::function<void()> r2 = [&] {
    ran.push_back("r2 " + B(recv_now(p2.a)));
    lp.remove_reader(p2.a);
    if (++done == 2) lp.stop();
  };
  auto phase2 = [&] {
    say("phase 2: send to a1 (unwatched), watch a2, send to a2, watch a1");
    send_now(p1.b, "1");
    lp.add_reader(p2.a, r2);
    send_now(p2.b, "2");
    lp.add_reader(p1.a, r1);
  };
  lp.call_soon([&] {
    lp.add_reader(p1.a, r1);
    say("phase 1: remove_reader(a1)", lp.remove_reader(p1.a));
    lp.call_soon(phase2);
  });
  lp.run_forever();
  std::sort(ran.begin(), ran.end());
  say("ran:", ran[0], ran[1]);
  lp.close();
}

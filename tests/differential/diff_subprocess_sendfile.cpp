// Differential scenarios of subprocesses and sendfile (the asyncio half:
// diff_subprocess_sendfile.py).
//
// A child's pipes are closed and its exit is caused in an order the parent controls (a control
// pipe as its stdin, or a signal once every pipe is closed): the kernel never decides which of
// two events the loop hears of first.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <functional>
#include <loop/loop.hpp>
#include <memory>
#include <optional>
#include <set>
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

std::string opt(const std::optional<int>& v) {
  return v ? std::to_string(*v) : std::string("None");
}

std::string exc_str(const std::exception_ptr& e) {
  return e ? std::string("<exception>") : std::string("None");
}

// diff::exception_name, plus the OSError subclasses of this group.
std::string err_name(const std::exception& e) {
  if (auto* se = dynamic_cast<const std::system_error*>(&e)) {
    if (se->code().value() == ESRCH) return "ProcessLookupError";
    if (se->code().value() == ESPIPE) return "OSError";
  }
  return diff::exception_name(e);
}

void say_exc(const std::string& what, const std::exception& e) {
  say(what, err_name(e), e.what());
}

void say_oserror(const std::string& what, const std::exception& e) {
  auto* se = dynamic_cast<const std::system_error*>(&e);
  say(what, err_name(e), se ? std::to_string(se->code().value()) : std::string("?"));
}

template <class F>
void run(F body, bool debug = false) {
  loop::EventLoop lp;
  lp.set_debug(debug);
  lp.run_until_complete(body(lp));
  lp.close();
}

// Arguments as a vector, built outside the coroutines (GCC 12 and braced lists of literals).
template <class... A>
std::vector<std::string> args(A... a) {
  return {std::string(a)...};
}

loop::SubprocessOptions stdio(loop::Stdio in, loop::Stdio out, loop::Stdio err) {
  loop::SubprocessOptions o;
  o.std_in = in;
  o.std_out = out;
  o.std_err = err;
  return o;
}

const loop::SubprocessOptions kNoPipes = stdio(loop::DEVNULL, loop::DEVNULL, loop::DEVNULL);

std::string pipe_name(const loop::SubprocessTransport& t, int fd) {
  return t.get_pipe_transport(fd) ? "pipe" : "None";
}

// Says every callback, with the returncode the transport reports at that moment.
struct Logger : loop::SubprocessProtocol {
  loop::Future<void> done;
  loop::SubprocessTransport* transport = nullptr;
  explicit Logger(loop::Future<void> d) : done(std::move(d)) {}

  void connection_made(loop::BaseTransport& t) override {
    transport = dynamic_cast<loop::SubprocessTransport*>(&t);
    say("connection_made", opt(transport->get_returncode()), pipe_name(*transport, 0),
        pipe_name(*transport, 1), pipe_name(*transport, 2));
  }
  void pipe_data_received(int fd, std::string_view data) override {
    say("pipe_data_received", fd, B(data));
  }
  void pipe_connection_lost(int fd, std::exception_ptr exc) override {
    say("pipe_connection_lost", fd, exc_str(exc));
  }
  void process_exited() override { say("process_exited", opt(transport->get_returncode())); }
  void connection_lost(std::exception_ptr exc) override {
    say("connection_lost", exc_str(exc), opt(transport->get_returncode()));
    done.set_result();
  }
};

void write_all(int fd, std::string_view data) {
  if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
    throw std::runtime_error("write");
}

struct SocketPair {
  int a = -1, b = -1;
  explicit SocketPair(bool nonblocking = true) {
    int fds[2];
    int flags = SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
    if (::socketpair(AF_UNIX, flags, 0, fds) != 0) throw std::runtime_error("socketpair");
    a = fds[0];
    b = fds[1];
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
  ~SocketPair() {
    ::close(a);
    ::close(b);
  }
};

// A non-blocking recv; "nothing" when nothing is there (Python's BlockingIOError).
std::string try_recv(int fd, std::size_t n = 100) {
  std::string buf(n, '\0');
  ssize_t got = ::recv(fd, buf.data(), n, MSG_DONTWAIT);
  if (got < 0) return "nothing";
  buf.resize(static_cast<std::size_t>(got));
  return B(buf);
}

struct TempFile {
  int fd = -1;
  explicit TempFile(std::string_view content) {
    char path[] = "/tmp/diff_subprocess_sendfile_XXXXXX";
    fd = ::mkstemp(path);
    if (fd < 0) throw std::runtime_error("mkstemp");
    ::unlink(path);
    write_all(fd, content);
    ::lseek(fd, 0, SEEK_SET);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() { ::close(fd); }
  long tell() const { return static_cast<long>(::lseek(fd, 0, SEEK_CUR)); }
};

}  // namespace

// ---- Subprocess transports -------------------------------------------------------------------

SCENARIO(exec_callback_order_driven_by_a_control_pipe) {
  // The child advances one step per line on its stdin (a pipe the parent writes directly).
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    int ctl[2];
    if (::pipe2(ctl, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    int ctl_w = ctl[1];
    struct P : Logger {
      int ctl_w;
      P(loop::Future<void> d, int w) : Logger(std::move(d)), ctl_w(w) {}
      void connection_made(loop::BaseTransport& t) override {
        Logger::connection_made(t);
        write_all(ctl_w, "1\n");
      }
      void pipe_connection_lost(int fd, std::exception_ptr exc) override {
        Logger::pipe_connection_lost(fd, exc);
        write_all(ctl_w, std::to_string(fd + 1) + "\n");
      }
    };
    std::string script =
        "read a; echo out; exec 1>&-; read b; echo err >&2; exec 2>&-; read c; exit 3";
    auto a = args("-c", script);
    auto options = stdio(loop::Stdio::from_fd(ctl[0]), loop::PIPE, loop::PIPE);
    auto started = co_await lp.subprocess_exec([&] { return std::make_shared<P>(done, ctl_w); },
                                               "/bin/sh", a, options);
    auto t = started.first;
    ::close(ctl[0]);
    say("returned", t->get_pid() > 0, opt(t->get_returncode()));
    co_await done;
    say("after", opt(t->get_returncode()), pipe_name(*t, 1));
    t->close();
    ::close(ctl_w);
  });
}

SCENARIO(exec_without_pipes_exit_code) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto a = args("-c", "exit 7");
    auto started = co_await lp.subprocess_exec([&] { return std::make_shared<Logger>(done); },
                                               "/bin/sh", a, kNoPipes);
    auto t = started.first;
    say("returned", opt(t->get_returncode()));
    co_await done;
    say("after", opt(t->get_returncode()));
    t->close();
  });
}

SCENARIO(shell_unknown_command_exits_127) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto started = co_await lp.subprocess_shell([&] { return std::make_shared<Logger>(done); },
                                                "no_such_command_w7 arg", kNoPipes);
    auto t = started.first;
    co_await done;
    say("after", opt(t->get_returncode()));
    t->close();
  });
}

SCENARIO(stdin_write_then_close) {
  // The child echoes the first line, then reports the EOF the parent's close gives it.
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    struct P : Logger {
      using Logger::Logger;
      loop::WriteTransport* stdin_pipe() const {
        return dynamic_cast<loop::WriteTransport*>(transport->get_pipe_transport(0));
      }
      void connection_made(loop::BaseTransport& t) override {
        Logger::connection_made(t);
        auto* in = stdin_pipe();
        in->write("hello\n");
        say("wrote", in->get_write_buffer_size());
      }
      void pipe_data_received(int fd, std::string_view data) override {
        Logger::pipe_data_received(fd, data);
        if (data == "got hello\n") {
          auto* in = stdin_pipe();
          in->close();
          say("stdin closing", in->is_closing());
        }
      }
      void pipe_connection_lost(int fd, std::exception_ptr exc) override {
        Logger::pipe_connection_lost(fd, exc);
        if (fd == 1) transport->terminate();
      }
    };
    std::string script =
        "read line; echo \"got $line\"; read rest; echo \"eof $?\"; exec 1>&-; exec sleep 30";
    auto a = args("-c", script);
    auto options = stdio(loop::PIPE, loop::PIPE, loop::DEVNULL);
    auto started = co_await lp.subprocess_exec([&] { return std::make_shared<P>(done); }, "/bin/sh",
                                               a, options);
    auto t = started.first;
    co_await done;
    auto rc = t->get_returncode();
    say("after", opt(rc), rc == -SIGTERM);
    t->close();
  });
}

SCENARIO(stderr_to_stdout_shares_the_pipe) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    struct P : Logger {
      using Logger::Logger;
      std::string out;
      std::set<int> fds;
      void pipe_data_received(int fd, std::string_view data) override {
        fds.insert(fd);
        out += data;
      }
      void pipe_connection_lost(int fd, std::exception_ptr exc) override {
        std::string list = "[";
        for (int f : fds) list += (list.size() > 1 ? ", " : "") + std::to_string(f);
        list += "]";
        say("pipe_connection_lost", fd, exc_str(exc), B(out), "data on", list);
        transport->kill();
      }
    };
    auto a = args("-c", "echo a; echo b >&2; echo c; exec 1>&- 2>&-; exec sleep 30");
    auto options = stdio(loop::DEVNULL, loop::PIPE, loop::STDOUT);
    auto started = co_await lp.subprocess_exec([&] { return std::make_shared<P>(done); }, "/bin/sh",
                                               a, options);
    auto t = started.first;
    co_await done;
    say("after", t->get_returncode() == -SIGKILL);
    t->close();
  });
}

SCENARIO(signals_on_running_exited_and_finished_process) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    const std::pair<const char*, int> cases[] = {
        {"send_signal", SIGUSR1}, {"terminate", SIGTERM}, {"kill", SIGKILL}};
    for (auto [name_c, sig] : cases) {
      std::string name = name_c;
      auto done = lp.create_future<void>();
      auto deliver = [name](loop::SubprocessTransport& t) {
        if (name == "send_signal")
          t.send_signal(SIGUSR1);
        else if (name == "terminate")
          t.terminate();
        else
          t.kill();
      };
      struct P : Logger {
        std::function<void(loop::SubprocessTransport&)> deliver;
        P(loop::Future<void> d, std::function<void(loop::SubprocessTransport&)> f)
            : Logger(std::move(d)), deliver(std::move(f)) {}
        void process_exited() override {
          Logger::process_exited();
          deliver(*transport);
          say("again in process_exited: no error");
        }
        void connection_lost(std::exception_ptr exc) override {
          deliver(*transport);
          say("again in connection_lost: no error");
          Logger::connection_lost(exc);
        }
      };
      auto a = args("-c", "exec sleep 30");
      auto started = co_await lp.subprocess_exec([&] { return std::make_shared<P>(done, deliver); },
                                                 "/bin/sh", a, kNoPipes);
      auto t = started.first;
      deliver(*t);
      say(name, "sent", opt(t->get_returncode()));
      co_await done;
      say(name, "returncode is -signal", t->get_returncode() == -sig);
      try {
        deliver(*t);
        say("after connection_lost: no error");
      } catch (const std::system_error& e) {
        say("after connection_lost:", err_name(e));
      }
      t->close();
    }
  });
}

SCENARIO(exec_spawn_errors) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int calls = 0;
    struct Case {
      const char* label;
      const char* program;
      const char* cwd;
    };
    const Case cases[] = {{"missing", "/nonexistent_w7/prog", nullptr},
                          {"from PATH", "no_such_program_w7", nullptr},
                          {"not executable", "/etc/passwd", nullptr},
                          {"cwd missing", "/bin/true", "/nonexistent_w7_dir"}};
    for (const Case& c : cases) {
      auto options = kNoPipes;
      if (c.cwd) options.cwd = c.cwd;
      try {
        auto started = co_await lp.subprocess_exec(
            [&] {
              ++calls;
              return std::make_shared<loop::SubprocessProtocol>();
            },
            c.program, {}, options);
        say("started?");
      } catch (const std::exception& e) {
        say_oserror(c.label, e);
      }
      say("factory calls", calls);
    }
  });
}

SCENARIO(stdin_broken_pipe_with_data_buffered) {
  // The child takes one line and closes its stdin while a megabyte waits in the transport.
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    struct P : Logger {
      using Logger::Logger;
      void connection_made(loop::BaseTransport& t) override {
        Logger::connection_made(t);
        auto* in = dynamic_cast<loop::WriteTransport*>(transport->get_pipe_transport(0));
        in->write("x\n" + std::string(1 << 20, 'y'));
      }
      void pipe_connection_lost(int fd, std::exception_ptr exc) override {
        std::string name = "NoneType";
        try {
          if (exc) std::rethrow_exception(exc);
        } catch (const std::exception& e) {
          name = err_name(e);
        }
        say("pipe_connection_lost", fd, name);
        transport->kill();
      }
    };
    auto a = args("-c", "read x; exec 0<&-; exec sleep 30");
    auto options = stdio(loop::PIPE, loop::DEVNULL, loop::DEVNULL);
    auto started = co_await lp.subprocess_exec([&] { return std::make_shared<P>(done); }, "/bin/sh",
                                               a, options);
    auto t = started.first;
    co_await done;
    say("after", t->get_returncode() == -SIGKILL);
    t->close();
  });
}

SCENARIO(close_in_process_exited_while_a_grandchild_holds_the_pipes) {
  // The child exits at once; a background cat keeps all three pipes open until stdin closes.
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    struct P : Logger {
      using Logger::Logger;
      void connection_made(loop::BaseTransport& t) override {
        // The child may have exited already: no returncode printed.
        transport = dynamic_cast<loop::SubprocessTransport*>(&t);
      }
      void process_exited() override {
        Logger::process_exited();
        transport->close();
        say("closed", transport->is_closing());
      }
    };
    auto a = args("-c", "exec 3<&0; cat <&3 & exit 5");
    auto started =
        co_await lp.subprocess_exec([&] { return std::make_shared<P>(done); }, "/bin/sh", a);
    auto t = started.first;
    co_await done;
    say("after", opt(t->get_returncode()));
  });
}

SCENARIO(close_kills_a_running_process) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    auto a = args("-c", "exec sleep 30");
    auto started =
        co_await lp.subprocess_exec([&] { return std::make_shared<Logger>(done); }, "/bin/sh", a);
    auto t = started.first;
    t->close();
    say("closed", t->is_closing(), opt(t->get_returncode()));
    t->close();
    co_await done;
    say("after", t->get_returncode() == -SIGKILL);
  });
}

// ---- asyncio.subprocess.Process --------------------------------------------------------------

SCENARIO(process_communicate_with_cat) {
  run([](loop::EventLoop&) -> loop::Coroutine<void> {
    auto proc = co_await loop::create_subprocess_exec("/bin/cat", {},
                                                      stdio(loop::PIPE, loop::PIPE, loop::DEVNULL));
    say("returncode", opt(proc.returncode()), proc.std_err == nullptr);
    auto res = co_await proc.communicate(std::string("some data"));
    say("communicate", B(res.first), proc.std_err ? B(res.second) : "None", opt(proc.returncode()));
  });
}

SCENARIO(process_shell_communicate_both_streams) {
  run([](loop::EventLoop&) -> loop::Coroutine<void> {
    auto proc = co_await loop::create_subprocess_shell(
        "echo out; echo err >&2; exit 5", stdio(loop::DEVNULL, loop::PIPE, loop::PIPE));
    auto res = co_await proc.communicate();
    say("communicate", B(res.first), B(res.second), opt(proc.returncode()));
    int rc = co_await proc.wait();
    say("wait again", rc);
  });
}

SCENARIO(process_readline_to_eof) {
  run([](loop::EventLoop&) -> loop::Coroutine<void> {
    auto proc = co_await loop::create_subprocess_shell(
        "echo one; echo two", stdio(loop::DEVNULL, loop::PIPE, loop::DEVNULL));
    for (int i = 0; i < 3; ++i) {
      std::string line = co_await proc.std_out->readline();
      say("line", B(line));
    }
    int rc = co_await proc.wait();
    say("wait", rc, opt(proc.returncode()));
  });
}

SCENARIO(process_signals_after_wait) {
  run([](loop::EventLoop&) -> loop::Coroutine<void> {
    auto a = args("-c", "exit 4");
    auto proc = co_await loop::create_subprocess_exec("/bin/sh", a, kNoPipes);
    int rc = co_await proc.wait();
    say("wait", rc, opt(proc.returncode()));
    for (std::string name : {"send_signal", "terminate", "kill"}) {
      try {
        if (name == "send_signal")
          proc.send_signal(SIGUSR1);
        else if (name == "terminate")
          proc.terminate();
        else
          proc.kill();
        say(name, "no error");
      } catch (const std::system_error& e) {
        say(name, err_name(e));
      }
    }
  });
}

SCENARIO(process_communicate_child_ignores_input) {
  run([](loop::EventLoop&) -> loop::Coroutine<void> {
    auto a = args("-c", "exec 0<&-; exit 2");
    auto proc = co_await loop::create_subprocess_exec("/bin/sh", a,
                                                      stdio(loop::PIPE, loop::PIPE, loop::DEVNULL));
    auto res = co_await proc.communicate(std::string(300000, 'x'));
    say("communicate", B(res.first), proc.std_err ? B(res.second) : "None", opt(proc.returncode()));
  });
}

SCENARIO(process_drain_when_the_child_closes_stdin) {
  // A megabyte waits in the transport when the child, after one line, closes its stdin.
  run([](loop::EventLoop&) -> loop::Coroutine<void> {
    auto a = args("-c", "read x; exec 0<&-; exec sleep 30");
    auto proc = co_await loop::create_subprocess_exec(
        "/bin/sh", a, stdio(loop::PIPE, loop::DEVNULL, loop::DEVNULL));
    proc.std_in->write("x\n" + std::string(1 << 20, 'y'));
    for (int i = 1; i <= 2; ++i) {
      try {
        co_await proc.std_in->drain();
        say("drain", i, "ok");
      } catch (const std::exception& e) {
        say("drain", i, err_name(e));
      }
    }
    say("closing", proc.std_in->is_closing());
    proc.kill();
    int rc = co_await proc.wait();
    say("wait", rc == -SIGKILL);
  });
}

// ---- sock_sendfile ---------------------------------------------------------------------------

namespace {

loop::Coroutine<void> sock_sendfile_case(loop::EventLoop& lp, std::string data, std::string label,
                                         std::size_t offset = 0,
                                         std::optional<std::size_t> count = std::nullopt,
                                         long start = 0) {
  SocketPair sp;
  TempFile f(data);
  ::lseek(f.fd, start, SEEK_SET);
  try {
    std::size_t n = co_await lp.sock_sendfile(sp.a, f.fd, offset, count);
    say(label, "sent", n, "position", f.tell(), "peer", try_recv(sp.b));
  } catch (const std::exception& e) {
    say_exc(label, e);
    say(label, "position", f.tell());
  }
}

}  // namespace

SCENARIO(sock_sendfile_results_offset_and_count) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    co_await sock_sendfile_case(lp, "0123456789", "whole");
    co_await sock_sendfile_case(lp, "", "empty");
    co_await sock_sendfile_case(lp, "0123456789", "offset 2 count 5", 2, 5);
    co_await sock_sendfile_case(lp, "0123456789", "offset 8 count 10", 8, 10);
    co_await sock_sendfile_case(lp, "0123456789", "offset 4", 4);
  });
}

SCENARIO(sock_sendfile_position_is_offset_plus_sent) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    co_await sock_sendfile_case(lp, "0123456789", "from 7, offset 0 count 2", 0, 2, 7);
    co_await sock_sendfile_case(lp, "0123456789", "from 7, offset 20", 20, std::nullopt, 7);
    co_await sock_sendfile_case(lp, "0123456789", "from 3, offset 10 count 1", 10, 1, 3);
  });
}

SCENARIO(sock_sendfile_bad_arguments) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    co_await sock_sendfile_case(lp, "0123456789", "count 0", 0, 0);
    int d = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    TempFile f("abc");
    try {
      co_await lp.sock_sendfile(d, f.fd);
    } catch (const std::exception& e) {
      say_exc("datagram", e);
    }
    ::close(d);
  });
}

SCENARIO(sock_sendfile_blocking_socket_in_debug_mode) {
  run(
      [](loop::EventLoop& lp) -> loop::Coroutine<void> {
        SocketPair sp(false);
        TempFile f("abc");
        try {
          co_await lp.sock_sendfile(sp.a, f.fd);
          say("sent?");
        } catch (const std::exception& e) {
          say_exc("blocking", e);
        }
        say("position", f.tell());
      },
      true);
}

SCENARIO(sock_sendfile_pipe_without_fallback) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    SocketPair sp;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    write_all(p[1], "hello");
    ::close(p[1]);
    try {
      std::size_t n = co_await lp.sock_sendfile(sp.a, p[0], 0, 3, false);
      say("sent", n);
    } catch (const std::exception& e) {
      say_exc("pipe", e);
    }
    std::string left(100, '\0');
    ssize_t got = ::read(p[0], left.data(), left.size());
    left.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
    say("peer", try_recv(sp.b), "left in the pipe", B(left));
    ::close(p[0]);
  });
}

SCENARIO(sock_sendfile_peer_gone_or_not_connected) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    SocketPair sp;
    ::close(sp.b);
    sp.b = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);  // for the destructor
    int u = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const std::pair<std::string, int> socks[] = {{"peer gone", sp.a}, {"not connected", u}};
    for (const auto& [label, s] : socks) {
      for (bool fallback : {false, true}) {
        std::string what = label + ", fallback " + (fallback ? "True" : "False");
        TempFile f("0123456789");
        try {
          std::size_t n = co_await lp.sock_sendfile(s, f.fd, 0, std::nullopt, fallback);
          say(what, "sent", n);
        } catch (const loop::SendfileNotAvailableError& e) {
          say_exc(what, e);
        } catch (const std::exception& e) {
          say_oserror(what, e);
        }
      }
    }
    ::close(u);
  });
}

SCENARIO(sock_sendfile_failed_fallback_position) {
  // Nothing was sent: asyncio leaves the position where the fallback's reads took it.
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    SocketPair sp;
    ::close(sp.b);
    sp.b = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);  // for the destructor
    TempFile f("0123456789");
    try {
      co_await lp.sock_sendfile(sp.a, f.fd, 2, 5);
    } catch (const std::exception& e) {
      say_oserror("peer gone", e);
    }
    // Not the file position: libloop leaves it after the bytes sent (none here), asyncio where
    // its fallback's reads stopped (README, "departs from asyncio on purpose").
  });
}

SCENARIO(sock_sendfile_large_file_to_a_reading_peer) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    SocketPair sp;
    const std::size_t size = 3 << 20;
    std::string data(size, '\0');
    for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<char>(i % 256);
    int b = sp.b;
    auto reader = [&lp, b, size]() -> loop::Coroutine<std::string> {
      std::string got;
      while (got.size() < size - 5) {
        std::string chunk = co_await lp.sock_recv(b, 65536);
        if (chunk.empty()) break;
        got += chunk;
      }
      co_return got;
    };
    TempFile f(data);
    auto task = lp.create_task(reader());
    std::size_t n = co_await lp.sock_sendfile(sp.a, f.fd, 5);
    std::string got = co_await task;
    say("sent", n, "position", f.tell(), "received", got.size(), got == data.substr(5));
  });
}

SCENARIO(sock_sendfile_cancelled_while_the_socket_is_full) {
  // Nobody reads the peer: after its first sendfile(2) the call waits for room forever.
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    SocketPair sp;
    TempFile f(std::string(8 << 20, 'z'));
    ::lseek(f.fd, 3, SEEK_SET);
    int a = sp.a, fd = f.fd;
    auto send = [&lp, a, fd]() -> loop::Coroutine<std::size_t> {
      std::size_t n = co_await lp.sock_sendfile(a, fd, 0);
      co_return n;
    };
    auto task = lp.create_task(send());
    for (int i = 0; i < 5; ++i) co_await loop::sleep(0);
    say("done", task.done());
    task.cancel();
    try {
      co_await task;
    } catch (const loop::CancelledError&) {
      say("cancelled");
    }
    std::string some = try_recv(sp.b);
    // Not the file position: libloop moves it past the bytes sent also on cancellation, asyncio
    // leaves it (README, "departs from asyncio on purpose").
    say("peer got some", some != "nothing" && some != "b''");
  });
}

// ---- loop.sendfile on a transport ------------------------------------------------------------

namespace {

struct Collector : loop::Protocol {
  loop::Future<void> done;
  std::string data;
  explicit Collector(loop::Future<void> d) : done(std::move(d)) {}
  void data_received(std::string_view d) override { data += d; }
  bool eof_received() override {
    say("server got", B(data));
    done.set_result();
    return false;
  }
};

using Body = std::function<loop::Coroutine<void>(loop::EventLoop&, loop::Transport&)>;

loop::Coroutine<void> transport_case(loop::EventLoop& lp, Body body) {
  auto done = lp.create_future<void>();
  // Named: a closure holding a Future, in a co_await's operand, is destroyed twice by GCC 12.
  auto factory = [done] { return std::make_shared<Collector>(done); };
  auto server = co_await lp.create_server(factory, "127.0.0.1", 0);
  int port = server->sockets().at(0).port();
  auto conn = co_await lp.create_connection([] { return std::make_shared<loop::Protocol>(); },
                                            "127.0.0.1", port);
  auto t = conn.first;
  co_await body(lp, *t);
  if (!t->is_closing()) t->write_eof();
  co_await done;
  t->close();
  server->close();
  co_await server->wait_closed();
}

}  // namespace

SCENARIO(loop_sendfile_between_writes) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    co_await transport_case(lp,
                            [](loop::EventLoop& lp, loop::Transport& t) -> loop::Coroutine<void> {
                              TempFile f("0123456789");
                              t.write("head-");
                              std::size_t n = co_await lp.sendfile(t, f.fd);
                              say("sent", n, "position", f.tell(), "buffer",
                                  t.get_write_buffer_size(), "reading", t.is_reading());
                              t.write("-tail");
                            });
  });
}

SCENARIO(loop_sendfile_offset_count_and_position) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    co_await transport_case(lp,
                            [](loop::EventLoop& lp, loop::Transport& t) -> loop::Coroutine<void> {
                              TempFile f("0123456789");
                              ::lseek(f.fd, 9, SEEK_SET);
                              std::size_t n = co_await lp.sendfile(t, f.fd, 3, 4);
                              say("sent", n, "position", f.tell());
                              n = co_await lp.sendfile(t, f.fd, 8, 100);
                              say("sent", n, "position", f.tell());
                              n = co_await lp.sendfile(t, f.fd, 50);
                              say("sent", n, "position", f.tell());
                            });
  });
}

SCENARIO(loop_sendfile_empty_file_without_fallback) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    co_await transport_case(
        lp, [](loop::EventLoop& lp, loop::Transport& t) -> loop::Coroutine<void> {
          {
            TempFile f("");
            std::size_t n = co_await lp.sendfile(t, f.fd, 0, std::nullopt, false);
            say("sent", n, "position", f.tell());
          }
          t.write("after");
        });
  });
}

SCENARIO(loop_sendfile_refusals) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    co_await transport_case(lp,
                            [](loop::EventLoop& lp, loop::Transport& t) -> loop::Coroutine<void> {
                              TempFile f("0123456789");
                              try {
                                co_await lp.sendfile(t, f.fd, 0, 0);
                              } catch (const std::exception& e) {
                                say_exc("count 0", e);
                              }
                              t.write("x");
                              t.close();
                              try {
                                co_await lp.sendfile(t, f.fd);
                              } catch (const std::exception& e) {
                                say_exc("closing", e);
                              }
                              say("position", f.tell());
                            });
  });
}

SCENARIO(loop_sendfile_write_while_in_progress) {
  // 32 MiB through loopback take many iterations; the server runs on the same loop.
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto done = lp.create_future<void>();
    struct Counter : loop::Protocol {
      loop::Future<void> done;
      std::size_t n = 0;
      explicit Counter(loop::Future<void> d) : done(std::move(d)) {}
      void data_received(std::string_view d) override { n += d.size(); }
      bool eof_received() override {
        say("server got", n);
        done.set_result();
        return false;
      }
    };
    auto factory = [done] { return std::make_shared<Counter>(done); };  // named: see above
    auto server = co_await lp.create_server(factory, "127.0.0.1", 0);
    int port = server->sockets().at(0).port();
    auto conn = co_await lp.create_connection([] { return std::make_shared<loop::Protocol>(); },
                                              "127.0.0.1", port);
    auto t = conn.first;
    {
      TempFile f(std::string(32 << 20, 's'));
      int fd = f.fd;
      loop::Transport* tp = t.get();
      auto send = [&lp, tp, fd]() -> loop::Coroutine<std::size_t> {
        std::size_t n = co_await lp.sendfile(*tp, fd);
        co_return n;
      };
      auto task = lp.create_task(send());
      co_await loop::sleep(0);
      co_await loop::sleep(0);
      say("in progress", !task.done(), "reading", t->is_reading());
      try {
        t->write("mid");
        say("wrote");
      } catch (const std::exception& e) {
        say_exc("write", e);
      }
      std::size_t n = co_await task;
      say("sent", n, "reading", t->is_reading());
    }
    t->write("end");
    t->write_eof();
    co_await done;
    t->close();
    server->close();
    co_await server->wait_closed();
  });
}

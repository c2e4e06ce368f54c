// loop.subprocess_exec / subprocess_shell at the transport level (asyncio's
// BaseSubprocessTransport): callback order, return codes, signals, errors, env, cwd,
// DEVNULL, STDOUT, fds, close(), the child watcher (pidfd and thread), the trace.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>

#include "json_schema.hpp"
#include "subprocess/child_watcher.hpp"
#include "subprocess_test_support.hpp"

using sptest::Recorder;
using sptest::run_bounded;

namespace {

// Starts `cmd` under sh with a Recorder and runs the loop until connection_lost.
std::pair<std::shared_ptr<loop::SubprocessTransport>, std::shared_ptr<Recorder>> run_shell(
    loop::EventLoop& lp, const std::string& cmd, loop::SubprocessOptions options = {}) {
  auto [t, p] = lp.run_until_complete(
      lp.subprocess_shell([] { return std::make_shared<Recorder>(); }, cmd, options));
  p->lp = &lp;
  p->events.push_back("returned");
  if (!p->lost) REQUIRE(run_bounded(lp));
  return {t, p};
}

// The same scenario under Python's asyncio: its callbacks, one per line.
std::vector<std::string> python_events(const std::string& cmd) {
  char path[] = "/tmp/loop_sp_order_XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::ofstream(path) << R"PY(
import asyncio, sys
class P(asyncio.SubprocessProtocol):
    def __init__(s, ev): s.ev = ev; s.done = asyncio.get_running_loop().create_future()
    def connection_made(s, t): s.ev.append("connection_made")
    def pipe_data_received(s, fd, d): s.ev.append(f"pipe_data_received {fd} {d.decode()}")
    def pipe_connection_lost(s, fd, e): s.ev.append(f"pipe_connection_lost {fd}" + (" exc" if e else ""))
    def process_exited(s): s.ev.append("process_exited")
    def connection_lost(s, e): s.ev.append("connection_lost"); s.done.set_result(None)
async def main():
    ev = []
    t, p = await asyncio.get_running_loop().subprocess_shell(lambda: P(ev), sys.argv[1])
    ev.append("returned")
    await p.done
    t.close()
    for e in ev: print(e.replace("\n", "\\n"))
asyncio.run(main())
)PY";
  std::string shell_cmd = "python3 " + std::string(path) + " '" + cmd + "'";
  std::FILE* f = ::popen(shell_cmd.c_str(), "r");
  REQUIRE(f);
  std::vector<std::string> lines;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, f)) {
    std::string l(buf);
    if (!l.empty() && l.back() == '\n') l.pop_back();
    lines.push_back(l);
  }
  ::pclose(f);
  ::unlink(path);
  return lines;
}

std::string escaped(std::string s) {
  std::string r;
  for (char c : s) r += c == '\n' ? std::string("\\n") : std::string(1, c);
  return r;
}

}  // namespace

TEST_CASE("SubprocessProtocol callbacks come in asyncio's order") {
  // One event at a time (sleeps between them) so that the order is not a race. The expected
  // list is what Python 3.11's asyncio gives on this machine, and the test runs that same
  // scenario under python3 again and compares.
  const std::string cmd =
      "sleep 0.1; echo out; exec 1>&-; sleep 0.1; echo err >&2; exec 2>&-; sleep 0.1; "
      "exec 0<&-; sleep 0.1; exit 5";
  const std::vector<std::string> expected = {"connection_made",
                                             "returned",
                                             "pipe_data_received 1 out\\n",
                                             "pipe_connection_lost 1",
                                             "pipe_data_received 2 err\\n",
                                             "pipe_connection_lost 2",
                                             "pipe_connection_lost 0",
                                             "process_exited",
                                             "connection_lost"};
  loop::EventLoop lp;
  auto [t, p] = run_shell(lp, cmd);
  std::vector<std::string> ours;
  for (auto& e : p->events) ours.push_back(escaped(e));
  CHECK(ours == expected);
  CHECK(t->get_returncode() == 5);
  CHECK(python_events(cmd) == expected);
}

TEST_CASE("connection_lost comes last, after process_exited and every pipe") {
  // A child that exits at once: whatever the interleaving, asyncio's invariants hold.
  for (int i = 0; i < 20; ++i) {
    loop::EventLoop lp;
    auto [t, p] = run_shell(lp, "echo out; echo err >&2; exit 3");
    auto& ev = p->events;
    REQUIRE(ev.front() == "connection_made");
    REQUIRE(ev.back() == "connection_lost");
    auto pos = [&](const std::string& s) {
      return std::find(ev.begin(), ev.end(), s) - ev.begin();
    };
    CHECK(pos("process_exited") < pos("connection_lost"));
    CHECK(pos("pipe_data_received 1 out\n") < pos("pipe_connection_lost 1"));
    CHECK(pos("pipe_data_received 2 err\n") < pos("pipe_connection_lost 2"));
    CHECK(pos("pipe_connection_lost 0") < static_cast<long>(ev.size()));
    CHECK(t->get_returncode() == 3);
    CHECK(std::count(ev.begin(), ev.end(), "connection_lost") == 1);
  }
}

TEST_CASE("subprocess_exec runs a program with its arguments; pid and returncode") {
  loop::EventLoop lp;
  auto [t, p] = lp.run_until_complete(
      lp.subprocess_exec([] { return std::make_shared<Recorder>(); }, "sh",
                         {"-c", "sleep 0.2; printf '%s|%s' \"$0\" \"$1\"", "a b", "c"}));
  p->lp = &lp;
  CHECK(t->get_pid() > 0);
  CHECK_FALSE(t->get_returncode().has_value());
  REQUIRE(run_bounded(lp));
  CHECK(p->out == "a b|c");
  CHECK(t->get_returncode() == 0);
  CHECK(p->transport == t.get());
}

TEST_CASE("a missing program is a clear error at subprocess_exec time") {
  loop::EventLoop lp;
  auto factory = [] { return std::make_shared<Recorder>(); };
  SECTION("by path") {
    try {
      lp.run_until_complete(lp.subprocess_exec(factory, "/nonexistent/prog-xyz"));
      FAIL("no error");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ENOENT);
      CHECK(std::string(e.what()).find("/nonexistent/prog-xyz") != std::string::npos);
    }
  }
  SECTION("searched in PATH") {
    try {
      lp.run_until_complete(lp.subprocess_exec(factory, "no-such-program-xyz"));
      FAIL("no error");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ENOENT);
      CHECK(std::string(e.what()).find("no-such-program-xyz") != std::string::npos);
    }
  }
  SECTION("not executable") {
    char path[] = "/tmp/loop_sp_noexec_XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::close(fd);
    try {
      lp.run_until_complete(lp.subprocess_exec(factory, path));
      FAIL("no error");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == EACCES);
    }
    ::unlink(path);
  }
  SECTION("a cwd that does not exist names the directory") {
    loop::SubprocessOptions o;
    o.cwd = "/nonexistent/dir-xyz";
    try {
      lp.run_until_complete(lp.subprocess_exec(factory, "true", {}, o));
      FAIL("no error");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ENOENT);
      CHECK(std::string(e.what()).find("/nonexistent/dir-xyz") != std::string::npos);
    }
  }
  SECTION("invalid options") {
    loop::SubprocessOptions o;
    o.std_in = loop::STDOUT;
    CHECK_THROWS_AS(lp.run_until_complete(lp.subprocess_exec(factory, "true", {}, o)),
                    std::invalid_argument);
    o = {};
    o.std_out = loop::STDOUT;
    CHECK_THROWS_AS(lp.run_until_complete(lp.subprocess_exec(factory, "true", {}, o)),
                    std::invalid_argument);
    o = {};
    o.env = std::map<std::string, std::string>{{"A=B", "c"}};
    CHECK_THROWS_AS(lp.run_until_complete(lp.subprocess_exec(factory, "true", {}, o)),
                    std::invalid_argument);
  }
  CHECK(sptest::zombie_children().empty());
}

TEST_CASE("env replaces the environment, cwd is honoured") {
  loop::EventLoop lp;
  SECTION("env") {
    loop::SubprocessOptions o;
    // No PATH in env: the program is looked up in /bin:/usr/bin, as Python does.
    o.env = std::map<std::string, std::string>{{"FOO", "bar baz"}};
    ::setenv("LOOP_SP_PARENT_ONLY", "1", 1);
    auto [t, p] = run_shell(lp, "echo \"$FOO|${LOOP_SP_PARENT_ONLY-unset}\"", o);
    CHECK(p->out == "bar baz|unset\n");
  }
  SECTION("inherited") {
    ::setenv("LOOP_SP_PARENT_ONLY", "from-parent", 1);
    auto [t, p] = run_shell(lp, "echo \"${LOOP_SP_PARENT_ONLY-unset}\"");
    CHECK(p->out == "from-parent\n");
  }
  SECTION("cwd") {
    char dir[] = "/tmp/loop_sp_cwd_XXXXXX";
    REQUIRE(::mkdtemp(dir));
    char real[PATH_MAX];
    REQUIRE(::realpath(dir, real));
    loop::SubprocessOptions o;
    o.cwd = dir;
    auto [t, p] = run_shell(lp, "pwd -P; echo x > made_here", o);
    CHECK(p->out == std::string(real) + "\n");
    CHECK(::access((std::string(dir) + "/made_here").c_str(), F_OK) == 0);
    ::unlink((std::string(dir) + "/made_here").c_str());
    ::rmdir(dir);
  }
}

TEST_CASE("stderr=STDOUT, DEVNULL and an fd") {
  loop::EventLoop lp;
  SECTION("STDOUT merges stderr into stdout") {
    loop::SubprocessOptions o;
    o.std_err = loop::STDOUT;
    auto [t, p] = run_shell(lp, "echo a; echo b >&2; echo c", o);
    CHECK(p->out == "a\nb\nc\n");
    CHECK(p->err.empty());
    CHECK(t->get_pipe_transport(1) != nullptr);
    CHECK(t->get_pipe_transport(2) == nullptr);
  }
  SECTION("DEVNULL") {
    loop::SubprocessOptions o;
    o.std_in = loop::DEVNULL;
    o.std_out = loop::DEVNULL;
    // cat reads /dev/null (EOF at once) and writes into /dev/null.
    auto [t, p] = run_shell(lp, "cat; echo gone; wc -c >&2", o);
    CHECK(p->out.empty());
    CHECK(p->err.find('0') != std::string::npos);
    CHECK(t->get_pipe_transport(0) == nullptr);
    CHECK(t->get_pipe_transport(1) == nullptr);
    CHECK(t->get_returncode() == 0);
    for (auto& e : p->events) CHECK(e.rfind("pipe_connection_lost 1", 0) != 0);
  }
  SECTION("an fd: the child writes into our file") {
    char path[] = "/tmp/loop_sp_fd_XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    loop::SubprocessOptions o;
    o.std_out = loop::Stdio::from_fd(fd);
    auto [t, p] = run_shell(lp, "echo into-file", o);
    CHECK(::fcntl(fd, F_GETFD) >= 0);  // still ours, still open
    std::ifstream in(path);
    std::string content((std::istreambuf_iterator<char>(in)), {});
    CHECK(content == "into-file\n");
    ::close(fd);
    ::unlink(path);
  }
  SECTION("INHERIT leaves the parent's stream") {
    loop::SubprocessOptions o;
    o.std_out = loop::INHERIT;
    o.std_err = loop::STDOUT;
    auto [t, p] = run_shell(lp, "true", o);
    CHECK(t->get_pipe_transport(1) == nullptr);
    CHECK(t->get_returncode() == 0);
  }
}

TEST_CASE("a child killed by a signal has returncode -N") {
  loop::EventLoop lp;
  auto start = [&] {
    return lp.run_until_complete(
        lp.subprocess_exec([] { return std::make_shared<Recorder>(); }, "sleep", {"30"}));
  };
  SECTION("kill") {
    auto [t, p] = start();
    p->lp = &lp;
    t->kill();
    REQUIRE(run_bounded(lp));
    CHECK(t->get_returncode() == -SIGKILL);
  }
  SECTION("terminate") {
    auto [t, p] = start();
    p->lp = &lp;
    t->terminate();
    REQUIRE(run_bounded(lp));
    CHECK(t->get_returncode() == -SIGTERM);
  }
  SECTION("send_signal, none after connection_lost") {
    auto [t, p] = start();
    p->lp = &lp;
    t->send_signal(SIGINT);
    REQUIRE(run_bounded(lp));
    CHECK(t->get_returncode() == -SIGINT);
    // asyncio: ProcessLookupError once the transport is done with the process.
    try {
      t->send_signal(SIGTERM);
      FAIL("no error");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ESRCH);
    }
  }
  SECTION("close() kills a running child; connection_lost still comes") {
    auto [t, p] = start();
    p->lp = &lp;
    t->close();
    CHECK(t->is_closing());
    REQUIRE(run_bounded(lp));
    CHECK(t->get_returncode() == -SIGKILL);
    CHECK(p->events.back() == "connection_lost");
  }
  CHECK(sptest::zombie_children().empty());
}

TEST_CASE("writing to the stdin pipe of a child that has exited: no SIGPIPE") {
  loop::EventLoop lp;
  auto [t, p] = lp.run_until_complete(
      lp.subprocess_shell([] { return std::make_shared<Recorder>(); }, "exit 0"));
  // Wait until the child is gone (its stdin read end closed with it).
  lp.run_until_complete(loop::sleep(0.3));
  auto* in = dynamic_cast<loop::WriteTransport*>(t->get_pipe_transport(0));
  REQUIRE(in);
  std::string big(256 * 1024, 'x');
  in->write(big);  // EPIPE (or already known closed): reported, never a signal
  p->lp = &lp;
  if (!p->lost) REQUIRE(run_bounded(lp));
  CHECK(t->get_returncode() == 0);
  sigset_t pending;
  sigpending(&pending);
  CHECK(sigismember(&pending, SIGPIPE) == 0);
}

TEST_CASE("set_protocol inside pause_writing (from the stdin pipe): the old protocol lives on") {
  // The stdin pipe's flow control calls the subprocess protocol; replacing it there must not
  // destroy it while its pause_writing still runs.
  struct Old : Recorder {
    std::vector<std::string>* log;
    std::shared_ptr<Recorder> next;
    explicit Old(std::vector<std::string>* l) : log(l) {}
    ~Old() override { log->push_back("old destroyed"); }
    void pause_writing() override {
      log->push_back("old pause_writing");
      transport->set_protocol(std::move(next));
      log->push_back(std::string("old still running, next ") + (next ? "kept" : "given"));
    }
  };
  loop::EventLoop lp;
  std::vector<std::string> log;
  auto next = std::make_shared<Recorder>();
  next->lp = &lp;
  auto t = lp.run_until_complete(lp.subprocess_shell(
                                     [&] {
                                       auto old = std::make_shared<Old>(&log);
                                       old->next = next;
                                       return old;
                                     },
                                     "sleep 0.2"))
               .first;  // only the transport holds the old protocol now
  auto* in = dynamic_cast<loop::WriteTransport*>(t->get_pipe_transport(0));
  REQUIRE(in);
  in->write(std::string(1024 * 1024, 'x'));  // more than the pipe takes: pause_writing
  REQUIRE(run_bounded(lp));
  CHECK(log == std::vector<std::string>{"old pause_writing", "old still running, next given",
                                        "old destroyed"});
  REQUIRE(!next->events.empty());
  CHECK(next->events.back() == "connection_lost");
  CHECK(std::count(next->events.begin(), next->events.end(), "process_exited") == 1);
}

TEST_CASE("the child watcher: pidfd here, the waitpid thread as fallback") {
  for (bool force_thread : {false, true}) {
    loop::EventLoop lp;
    pid_t pid = ::fork();
    if (pid == 0) {
      ::usleep(100 * 1000);
      ::_exit(42);
    }
    REQUIRE(pid > 0);
    int rc = -1000;
    auto w = loop::detail::ChildWatcher::watch(
        lp, pid,
        [&](int r) {
          rc = r;
          lp.stop();
        },
        force_thread);
    if (!force_thread) CHECK(w->uses_pidfd());  // Linux >= 5.3
    CHECK_FALSE(w->reaped());
    REQUIRE(run_bounded(lp, 10));
    CHECK(rc == 42);
    CHECK(w->reaped());
    CHECK(::waitpid(pid, nullptr, WNOHANG) == -1);  // already reaped: ECHILD
  }
}

TEST_CASE("the trace shows the child's pid, its pipe events and its exit status") {
  loop::EventLoop lp;
  auto tracer = std::make_shared<sptest::MemoryTracer>();
  lp.set_tracer(tracer);
  auto [t, p] = run_shell(lp, "printf hello; exit 9");
  int pid = t->get_pid();
  bool started = false, data = false, exited = false;
  for (auto& r : tracer->records) {
    if (r["ev"] == "subprocess_started") {
      started = true;
      CHECK(r["pid"] == pid);
      CHECK(r["program"] == "printf hello; exit 9");
    } else if (r["ev"] == "pipe_data_received") {
      data = true;
      CHECK(r["pid"] == pid);
      CHECK(r["fd"] == 1);
      CHECK(r["bytes"] == 5);
    } else if (r["ev"] == "subprocess_exited") {
      exited = true;
      CHECK(r["pid"] == pid);
      CHECK(r["returncode"] == 9);
    }
  }
  CHECK(started);
  CHECK(data);
  CHECK(exited);
  // Every record, the new kinds included, is what docs/trace.schema.json describes.
  std::ifstream in(std::string(LOOP_SOURCE_DIR) + "/docs/trace.schema.json");
  REQUIRE(in.good());
  loop_test::JsonSchema schema(nlohmann::json::parse(in));
  for (auto& r : tracer->records) {
    auto errs = schema.errors(r);
    INFO(r.dump());
    CHECK(errs.empty());
  }
}

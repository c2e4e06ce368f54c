// connect_read_pipe / connect_write_pipe (asyncio's _UnixReadPipeTransport and
// _UnixWritePipeTransport): data, EOF, flow control, a reader that goes away (EPIPE, never
// SIGPIPE), and fds that are not pipes.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <loop/loop.hpp>
#include <string>
#include <system_error>
#include <vector>

namespace {

struct Recorder : loop::Protocol {
  loop::EventLoop* lp = nullptr;
  std::vector<std::string> events;
  std::string data;
  std::exception_ptr lost_exc;
  bool lost = false;
  int pauses = 0, resumes = 0;
  bool stop_on_lost = true;

  void connection_made(loop::BaseTransport&) override { events.push_back("connection_made"); }
  void data_received(std::string_view d) override {
    if (events.empty() || events.back() != "data_received") events.push_back("data_received");
    data += d;
  }
  bool eof_received() override {
    events.push_back("eof_received");
    return false;
  }
  void pause_writing() override { ++pauses; }
  void resume_writing() override { ++resumes; }
  void connection_lost(std::exception_ptr e) override {
    events.push_back("connection_lost");
    lost = true;
    lost_exc = e;
    if (stop_on_lost && lp) lp->stop();
  }
};

void run_bounded(loop::EventLoop& lp, double seconds = 10) {
  bool timed_out = false;
  auto guard = lp.call_later(seconds, [&] {
    timed_out = true;
    lp.stop();
  });
  lp.run_forever();
  guard.cancel();
  REQUIRE_FALSE(timed_out);
}

void run_once(loop::EventLoop& lp) {
  lp.stop();
  lp.run_forever();
}

bool fd_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

int errno_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& ex) {
    return ex.code().value();
  } catch (...) {
  }
  return 0;
}

}  // namespace

TEST_CASE("connect_read_pipe: data, then EOF from the write end, in asyncio's order") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  loop::EventLoop lp;
  auto [t, p] = lp.run_until_complete(
      lp.connect_read_pipe([] { return std::make_shared<Recorder>(); }, fds[0]));
  p->lp = &lp;
  REQUIRE(p->events == std::vector<std::string>{"connection_made"});
  REQUIRE(*t->extra<int>("pipe") == fds[0]);
  REQUIRE((::fcntl(fds[0], F_GETFL) & O_NONBLOCK) != 0);  // made non-blocking
  REQUIRE(t->is_reading());
  REQUIRE(::write(fds[1], "hello ", 6) == 6);
  REQUIRE(::write(fds[1], "pipe", 4) == 4);
  ::close(fds[1]);
  run_bounded(lp);
  REQUIRE(p->data == "hello pipe");
  REQUIRE(p->events == std::vector<std::string>{"connection_made", "data_received", "eof_received",
                                                "connection_lost"});
  REQUIRE(p->lost_exc == nullptr);
  REQUIRE_FALSE(fd_open(fds[0]));  // the transport closed the pipe it owned
}

TEST_CASE("connect_read_pipe: a child process's stdout, chunk by chunk, then EOF") {
  std::FILE* child = ::popen(
      "python3 -c \"import sys,time\nfor i in range(3):\n    sys.stdout.write('chunk%d;' % i); "
      "sys.stdout.flush(); time.sleep(0.05)\"",
      "r");
  REQUIRE(child);
  int fd = ::dup(::fileno(child));
  loop::EventLoop lp;
  auto [t, p] =
      lp.run_until_complete(lp.connect_read_pipe([] { return std::make_shared<Recorder>(); }, fd));
  p->lp = &lp;
  run_bounded(lp);
  REQUIRE(::pclose(child) == 0);
  REQUIRE(p->data == "chunk0;chunk1;chunk2;");
  REQUIRE(p->events.back() == "connection_lost");
  REQUIRE(p->lost_exc == nullptr);
}

TEST_CASE("connect_read_pipe: pause_reading holds data back until resume_reading") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  loop::EventLoop lp;
  auto [t, p] = lp.run_until_complete(
      lp.connect_read_pipe([] { return std::make_shared<Recorder>(); }, fds[0]));
  p->lp = &lp;
  t->pause_reading();
  REQUIRE_FALSE(t->is_reading());
  REQUIRE(::write(fds[1], "held", 4) == 4);
  for (int i = 0; i < 5; ++i) run_once(lp);
  REQUIRE(p->data.empty());
  t->resume_reading();
  REQUIRE(t->is_reading());
  for (int i = 0; i < 5 && p->data.empty(); ++i) run_once(lp);
  REQUIRE(p->data == "held");
  ::close(fds[1]);
  run_bounded(lp);
  REQUIRE(p->lost);
}

TEST_CASE("connect_read_pipe: close() calls connection_lost(null) once and closes the fd") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  loop::EventLoop lp;
  auto [t, p] = lp.run_until_complete(
      lp.connect_read_pipe([] { return std::make_shared<Recorder>(); }, fds[0]));
  t->close();
  REQUIRE(t->is_closing());
  t->close();
  run_once(lp);
  run_once(lp);
  REQUIRE(p->events == std::vector<std::string>{"connection_made", "connection_lost"});
  REQUIRE_FALSE(fd_open(fds[0]));
  ::close(fds[1]);
}

TEST_CASE("connect_write_pipe: flow control with a slow reader, everything arrives intact") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  loop::EventLoop lp;
  auto [t, p] = lp.run_until_complete(
      lp.connect_write_pipe([] { return std::make_shared<Recorder>(); }, fds[1]));
  p->lp = &lp;
  REQUIRE(t->get_write_buffer_limits() == std::make_pair<std::size_t, std::size_t>(16384, 65536));
  // 1 MiB of a pattern: the pipe (64 KiB) takes a part directly, the rest is buffered.
  std::string payload(1 << 20, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 23);
  t->write(payload);
  REQUIRE(t->get_write_buffer_size() > 0);
  REQUIRE(t->get_write_buffer_size() < payload.size());
  REQUIRE(p->pauses == 1);  // over the 64 KiB high-water mark
  // A slow reader: 16 KiB per timer tick.
  std::string received;
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  std::function<void()> read_some = [&] {
    char buf[16384];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0) received.append(buf, static_cast<std::size_t>(n));
    if (received.size() == payload.size())
      lp.stop();
    else
      lp.call_later(0.0005, read_some);
  };
  lp.call_soon(read_some);
  run_bounded(lp, 30);
  REQUIRE(received == payload);
  REQUIRE(p->resumes == 1);
  REQUIRE(t->get_write_buffer_size() == 0);
  REQUIRE_FALSE(p->lost);
  t->close();
  run_once(lp);
  REQUIRE(p->lost);
  REQUIRE(p->lost_exc == nullptr);
  REQUIRE_FALSE(fd_open(fds[1]));
  ::close(fds[0]);
}

TEST_CASE("connect_write_pipe: a closed reader gives connection_lost(EPIPE), never SIGPIPE") {
  struct sigaction before {};
  ::sigaction(SIGPIPE, nullptr, &before);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  loop::EventLoop lp;
  auto [t, p] = lp.run_until_complete(
      lp.connect_write_pipe([] { return std::make_shared<Recorder>(); }, fds[1]));
  p->lp = &lp;
  ::close(fds[0]);
  t->write("nobody reads this");  // write(2) fails with EPIPE at once
  run_bounded(lp);
  REQUIRE(p->lost);
  REQUIRE(errno_of(p->lost_exc) == EPIPE);
  // Still alive, SIGPIPE's disposition untouched, and no SIGPIPE left pending.
  struct sigaction after {};
  ::sigaction(SIGPIPE, nullptr, &after);
  REQUIRE(after.sa_handler == before.sa_handler);
  sigset_t pending;
  sigpending(&pending);
  REQUIRE(sigismember(&pending, SIGPIPE) == 0);
  // Writes after the loss are dropped silently (asyncio counts them).
  REQUIRE_NOTHROW(t->write("more"));
}

TEST_CASE("connect_write_pipe: the reader leaving with data buffered is a broken pipe") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  loop::EventLoop lp;
  auto [t, p] = lp.run_until_complete(
      lp.connect_write_pipe([] { return std::make_shared<Recorder>(); }, fds[1]));
  p->lp = &lp;
  t->write(std::string(256 * 1024, 'x'));  // more than the pipe holds
  REQUIRE(t->get_write_buffer_size() > 0);
  ::close(fds[0]);
  run_bounded(lp);
  REQUIRE(errno_of(p->lost_exc) == EPIPE);
}

TEST_CASE("connect_write_pipe: the reader leaving with nothing buffered is a clean close") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  loop::EventLoop lp;
  auto [t, p] = lp.run_until_complete(
      lp.connect_write_pipe([] { return std::make_shared<Recorder>(); }, fds[1]));
  p->lp = &lp;
  ::close(fds[0]);  // seen through the reader trick, without writing anything
  run_bounded(lp);
  REQUIRE(p->lost);
  REQUIRE(p->lost_exc == nullptr);  // asyncio: _read_ready -> _close() without an error
}

TEST_CASE("connect_write_pipe: write_eof after the buffered data reaches the reader, then EOF") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  loop::EventLoop lp;
  auto [t, p] = lp.run_until_complete(
      lp.connect_write_pipe([] { return std::make_shared<Recorder>(); }, fds[1]));
  p->lp = &lp;
  REQUIRE(t->can_write_eof());
  t->write("last words");
  t->write_eof();
  REQUIRE(t->is_closing());
  run_bounded(lp);
  REQUIRE(p->lost_exc == nullptr);
  char buf[64];
  ssize_t n = ::read(fds[0], buf, sizeof buf);
  REQUIRE(std::string(buf, static_cast<std::size_t>(n)) == "last words");
  REQUIRE(::read(fds[0], buf, sizeof buf) == 0);  // EOF: the transport closed its end
  ::close(fds[0]);
}

TEST_CASE("connect_read_pipe and connect_write_pipe: a regular file is refused") {
  char path[] = "/tmp/libloop-pipe-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  loop::EventLoop lp;
  try {
    lp.run_until_complete(lp.connect_read_pipe([] { return std::make_shared<Recorder>(); }, fd));
    FAIL("a regular file was accepted");
  } catch (const std::invalid_argument& e) {
    REQUIRE(std::string(e.what()) == "Pipe transport is for pipes/sockets only.");
  }
  REQUIRE_THROWS_WITH(
      lp.run_until_complete(lp.connect_write_pipe([] { return std::make_shared<Recorder>(); }, fd)),
      "Pipe transport is only for pipes, sockets and character devices");
  REQUIRE(fd_open(fd));  // a refused fd still belongs to the caller
  ::close(fd);
  ::unlink(path);
}

TEST_CASE(
    "connect_read_pipe: set_protocol inside data_received, the old one lives until it returns") {
  struct Old : loop::Protocol {
    std::vector<std::string>* log;
    std::shared_ptr<Recorder> next;
    loop::ReadTransport* t = nullptr;
    explicit Old(std::vector<std::string>* l) : log(l) {}
    ~Old() override { log->push_back("old destroyed"); }
    void connection_made(loop::BaseTransport& tr) override {
      t = dynamic_cast<loop::ReadTransport*>(&tr);
    }
    void data_received(std::string_view d) override {
      log->push_back("old data " + std::string(d));
      t->set_protocol(std::move(next));
      log->push_back("old still running, next " + std::string(next ? "kept" : "given"));
    }
  };
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  loop::EventLoop lp;
  std::vector<std::string> log;
  auto next = std::make_shared<Recorder>();
  next->lp = &lp;
  lp.run_until_complete(lp.connect_read_pipe(
      [&] {
        auto old = std::make_shared<Old>(&log);
        old->next = next;
        return old;
      },
      fds[0]));  // the returned pair (the caller's reference) is gone at once
  REQUIRE(::write(fds[1], "one", 3) == 3);
  for (int i = 0; i < 100000 && log.size() < 3; ++i) run_once(lp);
  REQUIRE(::write(fds[1], "two", 3) == 3);
  ::close(fds[1]);
  run_bounded(lp);
  CHECK(log ==
        std::vector<std::string>{"old data one", "old still running, next given", "old destroyed"});
  CHECK(next->data == "two");
  CHECK(next->events ==
        std::vector<std::string>{"data_received", "eof_received", "connection_lost"});
}

// Spec items of the loop itself that had no test: default_exception_handler called from a
// custom handler, run_in_executor on a shut-down executor, the fd/signal methods after close(),
// getnameinfo flags and getaddrinfo proto. Each asserts what asyncio does (CPython 3.11).
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "stderr_capture.hpp"

namespace {

// Runs one iteration of the loop (what is ready now).
void run_once(loop::EventLoop& lp) {
  lp.call_soon([&lp] { lp.stop(); });
  lp.run_forever();
}

struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) == 0); }
  ~SocketPair() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
};

}  // namespace

TEST_CASE("default_exception_handler called from a custom handler logs the context") {
  // asyncio: a handler may call loop.default_exception_handler(context), which logs the
  // message ("Exception in callback ...") and the exception.
  loop::EventLoop lp;
  std::vector<std::string> seen;
  lp.set_exception_handler([&](loop::EventLoop& l, const loop::ExceptionContext& c) {
    seen.push_back(c.message);
    l.default_exception_handler(c);
  });
  std::string text;
  {
    test::StderrCapture capture;
    lp.call_soon([] { throw std::runtime_error("spec-misc boom"); });
    run_once(lp);
    text = capture.text();
  }
  REQUIRE(seen.size() == 1);
  CHECK_THAT(seen[0], Catch::StartsWith("Exception in callback"));
  CHECK_THAT(text, Catch::Contains("Exception in callback"));
  CHECK_THAT(text, Catch::Contains("spec-misc boom"));
  CHECK_THAT(text, Catch::Contains("runtime_error"));
  lp.close();
}

TEST_CASE("default_exception_handler called directly: the message, else asyncio's default") {
  // asyncio: an empty message is logged as 'Unhandled exception in event loop'.
  loop::EventLoop lp;
  std::string text;
  {
    test::StderrCapture capture;
    loop::ExceptionContext with_message;
    with_message.message = "spec-misc custom message";
    lp.default_exception_handler(with_message);
    loop::ExceptionContext empty;
    empty.exception = std::make_exception_ptr(std::logic_error("spec-misc logic"));
    lp.default_exception_handler(empty);
    text = capture.text();
  }
  CHECK_THAT(text, Catch::Contains("spec-misc custom message"));
  CHECK_THAT(text, Catch::Contains("Unhandled exception in event loop"));
  CHECK_THAT(text, Catch::Contains("spec-misc logic"));
  lp.close();
}

TEST_CASE("run_in_executor on a custom executor that was shut down raises runtime_error") {
  // asyncio: executor.submit raises RuntimeError('cannot schedule new futures after shutdown')
  // out of run_in_executor; the loop goes on working.
  loop::EventLoop lp;
  std::vector<std::string> reported;
  lp.set_exception_handler(
      [&](loop::EventLoop&, const loop::ExceptionContext& c) { reported.push_back(c.message); });
  loop::ThreadPoolExecutor ex(1);
  auto before = lp.run_in_executor(&ex, [] { return 1; });
  CHECK(lp.run_until_complete(before) == 1);
  ex.shutdown(true);
  bool ran = false;
  CHECK_THROWS_AS(lp.run_in_executor(&ex, [&ran] { ran = true; }), std::runtime_error);
  CHECK_THROWS_WITH(lp.run_in_executor(&ex, [&ran] { ran = true; }),
                    "cannot schedule new futures after shutdown");
  auto after = lp.run_in_executor(nullptr, [] { return 2; });
  CHECK(lp.run_until_complete(after) == 2);
  run_once(lp);
  CHECK_FALSE(ran);
  CHECK(reported.empty());
  lp.close();
}

TEST_CASE(
    "after close(): add_reader, add_writer, add_signal_handler raise, removing returns false") {
  // asyncio (3.11 checked): add_reader, add_writer and add_signal_handler raise
  // RuntimeError('Event loop is closed'); remove_reader, remove_writer and
  // remove_signal_handler return False, even for a reader added before close().
  loop::EventLoop lp;
  SocketPair sp;
  lp.add_reader(sp.fd[0], [] {});
  lp.add_writer(sp.fd[1], [] {});
  lp.add_signal_handler(SIGUSR1, [] {});
  lp.close();
  const char* msg = "Event loop is closed";
  CHECK_THROWS_WITH(lp.add_reader(sp.fd[0], [] {}), msg);
  CHECK_THROWS_AS(lp.add_reader(sp.fd[0], [] {}), std::runtime_error);
  CHECK_THROWS_WITH(lp.add_writer(sp.fd[1], [] {}), msg);
  CHECK_THROWS_AS(lp.add_writer(sp.fd[1], [] {}), std::runtime_error);
  CHECK_THROWS_WITH(lp.add_signal_handler(SIGUSR2, [] {}), msg);
  CHECK_THROWS_AS(lp.add_signal_handler(SIGUSR2, [] {}), std::runtime_error);
  CHECK_FALSE(lp.remove_reader(sp.fd[0]));
  CHECK_FALSE(lp.remove_writer(sp.fd[1]));
  CHECK_FALSE(lp.remove_reader(sp.fd[1]));
  CHECK_FALSE(lp.remove_signal_handler(SIGUSR1));
  CHECK_FALSE(lp.remove_signal_handler(SIGUSR2));
  // close() removed the handler: the signal's disposition is the default one again.
  struct sigaction current {};
  REQUIRE(::sigaction(SIGUSR1, nullptr, &current) == 0);
  CHECK(current.sa_handler == SIG_DFL);
}

TEST_CASE("getnameinfo with NI_NUMERICHOST | NI_NUMERICSERV gives numbers") {
  // Python: socket.getnameinfo(('127.0.0.1', 80), NI_NUMERICHOST | NI_NUMERICSERV)
  // == ('127.0.0.1', '80'), where without NI_NUMERICSERV port 80 may read 'http'.
  loop::EventLoop lp;
  auto [host, serv] = lp.run_until_complete(lp.getnameinfo(
      loop::SocketAddress::from_ip("127.0.0.1", 80), NI_NUMERICHOST | NI_NUMERICSERV));
  CHECK(host == "127.0.0.1");
  CHECK(serv == "80");
  lp.close();
}

TEST_CASE("getaddrinfo with proto gives only the entries of that protocol") {
  // Python: loop.getaddrinfo(host, 80, proto=IPPROTO_UDP) lists SOCK_DGRAM entries only, and
  // proto=IPPROTO_TCP SOCK_STREAM entries only.
  loop::EventLoop lp;
  for (std::string host : {"127.0.0.1", "localhost"}) {
    INFO(host);
    std::string port = "80";
    auto udp = lp.run_until_complete(lp.getaddrinfo(host, port, 0, 0, IPPROTO_UDP));
    REQUIRE_FALSE(udp.empty());
    for (auto& ai : udp) {
      CHECK(ai.type == SOCK_DGRAM);
      CHECK(ai.proto == IPPROTO_UDP);
      CHECK(ai.address.port() == 80);
    }
    auto tcp = lp.run_until_complete(lp.getaddrinfo(host, port, 0, 0, IPPROTO_TCP));
    REQUIRE_FALSE(tcp.empty());
    for (auto& ai : tcp) {
      CHECK(ai.type == SOCK_STREAM);
      CHECK(ai.proto == IPPROTO_TCP);
    }
    // Without proto: both kinds (and SOCK_RAW) are listed.
    auto all = lp.run_until_complete(lp.getaddrinfo(host, port));
    CHECK(all.size() > udp.size());
  }
  lp.close();
}

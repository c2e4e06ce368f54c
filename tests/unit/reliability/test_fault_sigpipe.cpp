// SIGPIPE never kills the process: writes to a peer that is gone, through every write path
// the library has (sock_sendall, sock_sendfile, the socket transport, the write-pipe
// transport, datagram transports). Each test first puts SIGPIPE back to SIG_DFL — ctest or a
// shell may start us with it ignored, which would hide the bug — so a SIGPIPE raised anywhere
// kills the test program and fails it.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <loop/loop.hpp>
#include <memory>
#include <string>
#include <system_error>
#include <thread>

#include "io_test_support.hpp"
#include "transport_helpers.hpp"

using iotest::Fd;

namespace {

void sigpipe_default() {
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  REQUIRE(::sigaction(SIGPIPE, &sa, nullptr) == 0);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  REQUIRE(::pthread_sigmask(SIG_UNBLOCK, &set, nullptr) == 0);
}

// A connected pair of non-blocking unix stream sockets.
std::pair<Fd, Fd> stream_pair() {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  return {Fd(sv[0]), Fd(sv[1])};
}

int error_code_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& se) {
    return se.code().value();
  } catch (...) {
  }
  return 0;
}

// An unlinked temporary file of `size` bytes, for sock_sendfile.
int temp_file_of(std::size_t size) {
  char path[] = "/tmp/libloop-sigpipe-XXXXXX";
  int file = ::mkstemp(path);
  REQUIRE(file >= 0);
  ::unlink(path);
  std::string data(size, 'z');
  REQUIRE(::write(file, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
  return file;
}

// sock_sendfile of the whole file: 0, or the errno it failed with.
loop::Coroutine<int> sendfile_errno(loop::EventLoop& lp, int sock, int file) {
  try {
    co_await lp.sock_sendfile(sock, file, 0);
  } catch (const std::system_error& e) {
    co_return e.code().value();
  }
  co_return 0;
}

}  // namespace

TEST_CASE("sigpipe: the process really dies of SIGPIPE when nothing prevents it") {
  // The control: a child writing to a closed socket with plain write(2) is killed by SIGPIPE,
  // so the tests below would notice one.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::signal(SIGPIPE, SIG_DFL);
    int sv[2];
    ::socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    ::close(sv[1]);
    (void)::write(sv[0], "x", 1);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGPIPE);
}

TEST_CASE("sigpipe: sock_sendall to a closed peer raises EPIPE") {
  sigpipe_default();
  loop::EventLoop lp;
  auto [a, b] = stream_pair();
  b.reset();
  auto send = [&]() -> loop::Coroutine<int> {
    try {
      co_await lp.sock_sendall(a, std::string(1 << 20, 'x'));
    } catch (const std::system_error& e) {
      co_return e.code().value();
    }
    co_return 0;
  };
  CHECK(lp.run_until_complete(send()) == EPIPE);
  // And again: the socket stays an error, never a signal.
  CHECK(lp.run_until_complete(send()) == EPIPE);
  lp.close();
}

TEST_CASE("sigpipe: sock_sendall to a TCP peer that reset mid-write") {
  sigpipe_default();
  loop::EventLoop lp;
  auto run = [&]() -> loop::Coroutine<int> {
    loop::SocketAddress bound;
    Fd lst = iotest::listener(loop::SocketAddress::from_ip("127.0.0.1", 0), &bound);
    Fd client = iotest::stream_socket(AF_INET);
    auto accepting = lp.create_task(lp.sock_accept(lst));
    co_await lp.sock_connect(client, bound);
    auto [conn, peer] = co_await accepting;
    // The peer reads a little, then resets (SO_LINGER 0) while we are still writing.
    lp.call_later(0.05, [conn = conn] {
      char buf[4096];
      (void)::read(conn, buf, sizeof buf);
      linger l{1, 0};
      ::setsockopt(conn, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      ::close(conn);
    });
    try {
      for (int i = 0; i < 64; ++i) co_await lp.sock_sendall(client, std::string(1 << 20, 'y'));
    } catch (const std::system_error& e) {
      co_return e.code().value();
    }
    co_return 0;
  };
  int err = lp.run_until_complete(run());
  CHECK((err == EPIPE || err == ECONNRESET));
  lp.close();
}

TEST_CASE("sigpipe: sock_sendfile to a closed peer raises, the process lives") {
  sigpipe_default();
  loop::EventLoop lp;
  auto [a, b] = stream_pair();
  b.reset();
  int file = temp_file_of(1 << 20);
  CHECK(lp.run_until_complete(sendfile_errno(lp, a, file)) == EPIPE);
  ::close(file);
  lp.close();
}

TEST_CASE("sigpipe: sock_sendfile to a peer that closes mid-transfer, the process lives") {
  // The kernel raises SIGPIPE also from a sendfile(2) that returns a partial count, when the
  // peer closes while the copy runs (seen with unix sockets: 65536 returned, SIGPIPE pending).
  // A reader thread takes one read and closes, 200 times; a SIGPIPE let through kills us.
  sigpipe_default();
  int file = temp_file_of(16 << 20);
  int failures = 0;
  for (int round = 0; round < 200; ++round) {
    loop::EventLoop lp;
    auto [a, b] = stream_pair();
    // A large send buffer (where net.core.wmem_max allows) makes one sendfile(2) copy many
    // chunks, so that the reader's close lands between two of them.
    int sndbuf = 4 << 20;
    ::setsockopt(a.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    std::atomic<bool> reading{false};
    std::thread reader([&b = b, &reading] {
      int flags = ::fcntl(b.fd, F_GETFL);
      ::fcntl(b.fd, F_SETFL, flags & ~O_NONBLOCK);
      char buf[65536];
      reading = true;
      (void)::read(b.fd, buf, sizeof buf);
      b.reset();  // closes with unread data: the sender's next chunk fails
    });
    // The reader must sleep in read() when the first chunk arrives, so that it closes while
    // sendfile(2) is still copying the next ones.
    while (!reading) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    int err = lp.run_until_complete(sendfile_errno(lp, a, file));
    reader.join();
    if (err == EPIPE || err == ECONNRESET) ++failures;
    lp.close();
  }
  ::close(file);
  CHECK(failures == 200);  // every transfer was cut short, and reported as such
}

TEST_CASE("sigpipe: the socket transport writing to a closed peer loses the connection") {
  sigpipe_default();
  loop::EventLoop lp;
  auto [a, b] = stream_pair();
  auto run = [&]() -> loop::Coroutine<void> {
    loop::ConnectionOptions opts;
    opts.sock = a.fd;
    auto [tr, proto] = co_await lp.create_connection(
        [] { return std::make_shared<test::RecordingProtocol>(); }, opts);
    a.fd = -1;  // the transport owns it now
    b.reset();
    // Big enough to be buffered, so the failure comes from the loop's own write, not only
    // from the first synchronous send().
    for (int i = 0; i < 8 && !proto->lost; ++i) {
      tr->write(std::string(256 * 1024, 'w'));
      co_await loop::sleep(0.01);
    }
    for (int i = 0; i < 200 && !proto->lost; ++i) co_await loop::sleep(0.01);
    CHECK(proto->lost);
    int err = error_code_of(proto->lost_error);
    CHECK((err == EPIPE || err == ECONNRESET));
  };
  lp.run_until_complete(run());
  lp.close();
}

TEST_CASE("sigpipe: the write-pipe transport writing to a closed reader") {
  sigpipe_default();
  loop::EventLoop lp;
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  auto run = [&]() -> loop::Coroutine<void> {
    auto [tr, proto] = co_await lp.connect_write_pipe(
        [] { return std::make_shared<test::RecordingProtocol>(); }, p[1]);
    ::close(p[0]);
    for (int i = 0; i < 8; ++i) tr->write(std::string(128 * 1024, 'p'));
    for (int i = 0; i < 200 && !proto->lost; ++i) co_await loop::sleep(0.01);
    CHECK(proto->lost);
    CHECK(error_code_of(proto->lost_error) == EPIPE);
  };
  lp.run_until_complete(run());
  lp.close();
}

TEST_CASE("sigpipe: datagram sends to a peer that is gone report errors, never a signal") {
  sigpipe_default();
  loop::EventLoop lp;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0);
  struct Dgram : loop::DatagramProtocol {
    int errors = 0;
    int last = 0;
    void error_received(std::exception_ptr e) override {
      ++errors;
      last = error_code_of(e);
    }
  };
  auto run = [&]() -> loop::Coroutine<void> {
    loop::DatagramEndpointOptions o;
    o.sock = sv[0];
    auto [tr, proto] =
        co_await lp.create_datagram_endpoint([] { return std::make_shared<Dgram>(); }, o);
    ::close(sv[1]);
    for (int i = 0; i < 10; ++i) tr->sendto(std::string(1000, 'd'));
    for (int i = 0; i < 100 && proto->errors == 0; ++i) co_await loop::sleep(0.01);
    CHECK(proto->errors >= 1);
    // Linux: ECONNREFUSED for the first send after the peer closed, ENOTCONN after that.
    CHECK((proto->last == ECONNREFUSED || proto->last == ENOTCONN));
    tr->close();
  };
  lp.run_until_complete(run());
  lp.close();
}

// sock_sendfile: sendfile(2), the read-and-send fallback, SendfileNotAvailableError, and the
// file position left after the last byte sent (asyncio's loop.sock_sendfile).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <loop/loop.hpp>
#include <string>
#include <system_error>
#include <thread>

#include "io_test_support.hpp"

using iotest::Fd;

namespace {

// FNV-1a, to compare megabytes by hash as well as by size.
std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

struct TempFile {
  std::string path;
  int fd = -1;
  explicit TempFile(const std::string& content) {
    char p[] = "/tmp/libloop-sendfile-XXXXXX";
    fd = ::mkstemp(p);
    REQUIRE(fd >= 0);
    path = p;
    std::size_t off = 0;
    while (off < content.size()) {
      ssize_t n = ::write(fd, content.data() + off, content.size() - off);
      REQUIRE(n > 0);
      off += static_cast<std::size_t>(n);
    }
    ::lseek(fd, 0, SEEK_SET);
  }
  ~TempFile() {
    ::close(fd);
    ::unlink(path.c_str());
  }
};

struct StreamPair {
  Fd a, b;
  StreamPair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
    a = Fd(fds[0]);
    b = Fd(fds[1]);
  }
};

loop::Coroutine<std::string> read_to_eof(loop::EventLoop& lp, int sock) {
  std::string got;
  for (;;) {
    std::string part = co_await lp.sock_recv(sock, 1 << 16);
    if (part.empty()) co_return got;
    got += part;
  }
}

struct Outcome {
  std::size_t sent = 0;
  std::string received;
};

loop::Coroutine<Outcome> send_file(loop::EventLoop& lp, int sender, int receiver, int file,
                                   std::size_t offset, std::optional<std::size_t> count,
                                   bool fallback) {
  auto reading = lp.create_task(read_to_eof(lp, receiver));
  Outcome out;
  out.sent = co_await lp.sock_sendfile(sender, file, offset, count, fallback);
  ::shutdown(sender, SHUT_WR);
  out.received = co_await reading;
  co_return out;
}

off_t position(int fd) {
  return ::lseek(fd, 0, SEEK_CUR);
}

}  // namespace

TEST_CASE("sock_sendfile sends a few MiB with sendfile(2) (fallback=false), checked by hash") {
  std::string data = iotest::pattern(5 * 1024 * 1024 + 123);
  TempFile f(data);
  loop::EventLoop lp;
  StreamPair sp;
  Outcome out =
      lp.run_until_complete(send_file(lp, sp.a, sp.b, f.fd, 0, std::nullopt, /*fallback=*/false));
  CHECK(out.sent == data.size());
  CHECK(out.received.size() == data.size());
  CHECK(fnv1a(out.received) == fnv1a(data));
  CHECK(position(f.fd) == static_cast<off_t>(data.size()));
  lp.close();
}

TEST_CASE("sock_sendfile over TCP with offset and count leaves the file position after them") {
  std::string data = iotest::pattern(3 * 1024 * 1024);
  TempFile f(data);
  loop::EventLoop lp;
  loop::SocketAddress bound;
  Fd lst = iotest::listener(loop::SocketAddress::from_ip("127.0.0.1", 0), &bound);
  Fd client = iotest::stream_socket(AF_INET);
  auto accepting = lp.create_task(lp.sock_accept(lst));
  lp.run_until_complete(lp.sock_connect(client, bound));
  Fd server(lp.run_until_complete(accepting).first);
  const std::size_t offset = 1000, count = 2 * 1024 * 1024 + 7;
  Outcome out = lp.run_until_complete(send_file(lp, client, server, f.fd, offset, count, true));
  CHECK(out.sent == count);
  CHECK(fnv1a(out.received) == fnv1a(data.substr(offset, count)));
  CHECK(position(f.fd) == static_cast<off_t>(offset + count));
  lp.close();
}

TEST_CASE("sock_sendfile from a pipe: the fallback copies it, fallback=false refuses") {
  std::string data = iotest::pattern(3 * 1024 * 1024);
  loop::EventLoop lp;
  {
    // A pipe is no regular file: sendfile(2) is not available for it.
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    Fd r(p[0]), w(p[1]);
    StreamPair sp;
    CHECK_THROWS_AS(lp.run_until_complete(lp.sock_sendfile(sp.a, r, 0, std::nullopt, false)),
                    loop::SendfileNotAvailableError);
    // With a count, sendfile(2) itself refuses the pipe, in asyncio's words; nothing is read.
    REQUIRE(::write(w, "hello", 5) == 5);
    CHECK_THROWS_WITH(lp.run_until_complete(lp.sock_sendfile(sp.a, r, 0, 3, false)),
                      "os.sendfile call failed");
    char left[8];
    CHECK(::read(r, left, sizeof left) == 5);
  }
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  Fd r(p[0]), w(p[1]);
  std::thread writer([&] {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(w, data.data() + off, data.size() - off);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    w.reset();
  });
  StreamPair sp;
  Outcome out = lp.run_until_complete(send_file(lp, sp.a, sp.b, r, 0, std::nullopt, true));
  writer.join();
  CHECK(out.sent == data.size());
  CHECK(fnv1a(out.received) == fnv1a(data));
  lp.close();
}

TEST_CASE("sock_sendfile refuses a zero count, a datagram socket and a blocking socket") {
  TempFile f("some bytes");
  loop::EventLoop lp;
  StreamPair sp;
  CHECK_THROWS_AS(lp.run_until_complete(lp.sock_sendfile(sp.a, f.fd, 0, std::size_t{0})),
                  std::invalid_argument);
  int d[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, d) == 0);
  Fd da(d[0]), db(d[1]);
  CHECK_THROWS_AS(lp.run_until_complete(lp.sock_sendfile(da, f.fd)), std::invalid_argument);
  Fd blocking(::socket(AF_INET, SOCK_STREAM, 0));
  CHECK_THROWS_AS(lp.run_until_complete(lp.sock_sendfile(blocking, f.fd)), std::invalid_argument);
  CHECK(position(f.fd) == 0);
  lp.close();
}

TEST_CASE("sock_sendfile of an empty file sends nothing") {
  TempFile f("");
  loop::EventLoop lp;
  StreamPair sp;
  CHECK(lp.run_until_complete(lp.sock_sendfile(sp.a, f.fd)) == 0);
  CHECK(position(f.fd) == 0);
  lp.close();
}

loop::Coroutine<void> reader_that_quits(loop::EventLoop& lp, Fd* sock, std::size_t after) {
  std::size_t got = 0;
  while (got < after) {
    std::string part = co_await lp.sock_recv(*sock, 1 << 16);
    if (part.empty()) break;
    got += part.size();
  }
  sock->reset();  // the peer goes away in the middle of the transfer
}

loop::Coroutine<int> send_to_quitter(loop::EventLoop& lp, int sender, Fd* receiver, int file,
                                     bool fallback) {
  auto reading = lp.create_task(reader_that_quits(lp, receiver, 256 * 1024));
  int err = 0;
  try {
    (void)co_await lp.sock_sendfile(sender, file, 0, std::nullopt, fallback);
  } catch (const std::system_error& e) {
    err = e.code().value();
  }
  co_await reading;
  co_return err;
}

TEST_CASE("sock_sendfile to a peer that goes away fails and still updates the file position") {
  std::string data = iotest::pattern(16 * 1024 * 1024);
  TempFile f(data);
  for (bool fallback : {false, true}) {
    ::lseek(f.fd, 0, SEEK_SET);
    loop::EventLoop lp;
    StreamPair sp;
    int err = lp.run_until_complete(send_to_quitter(lp, sp.a, &sp.b, f.fd, fallback));
    CHECK((err == EPIPE || err == ECONNRESET));
    off_t pos = position(f.fd);
    CHECK(pos >= 256 * 1024);  // at least what the reader took
    CHECK(pos < static_cast<off_t>(data.size()));
    lp.close();
  }
}

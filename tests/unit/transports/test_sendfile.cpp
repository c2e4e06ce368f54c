// EventLoop::sendfile over a socket transport: sendfile(2) after the buffer is flushed, the
// fallback for files sendfile(2) refuses, the file position afterwards.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <loop/loop.hpp>

#include "python_script_peer.hpp"
#include "transport_helpers.hpp"

using test::PythonPeer;
using test::RecordingProtocol;

namespace {

// Reads to EOF, prints the byte count and the SHA-256.
const char* kPySink = R"(
import socket, hashlib
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(1 << 20)
    if not d: break
    h.update(d); n += len(d)
print(n, h.hexdigest(), flush=True)
)";

struct TempFile {
  std::string path;
  int fd = -1;
  explicit TempFile(const std::string& content) {
    char tmpl[] = "/tmp/libloop-sendfile-XXXXXX";
    fd = ::mkstemp(tmpl);
    path = tmpl;
    std::size_t off = 0;
    while (off < content.size()) {
      ssize_t n = ::write(fd, content.data() + off, content.size() - off);
      if (n <= 0) throw std::runtime_error("write failed");
      off += static_cast<std::size_t>(n);
    }
    ::lseek(fd, 0, SEEK_SET);
  }
  ~TempFile() {
    ::close(fd);
    ::unlink(path.c_str());
  }
};

}  // namespace

TEST_CASE("sendfile: buffered data first, then the file by sendfile(2), position updated") {
  PythonPeer peer(kPySink);
  int port = peer.port();
  const std::string content = test::pattern(10u << 20, 7);
  TempFile file(content);
  loop::EventLoop lp;
  std::string expected;
  std::shared_ptr<RecordingProtocol> proto;
  auto main = [&]() -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.create_connection(
        [] { return std::make_shared<RecordingProtocol>(); }, "127.0.0.1", port);
    // More than the socket takes at once: sendfile must wait for the buffer to flush.
    std::string header = test::pattern(8u << 20, 3);
    t->write(header);
    std::size_t sent = co_await lp.sendfile(*t, file.fd);
    REQUIRE(sent == content.size());
    REQUIRE(::lseek(file.fd, 0, SEEK_CUR) == static_cast<off_t>(content.size()));
    REQUIRE(t->is_reading());  // paused during the send, resumed after
    // A range: offset and count.
    std::size_t part = co_await lp.sendfile(*t, file.fd, 100, 1000);
    REQUIRE(part == 1000);
    REQUIRE(::lseek(file.fd, 0, SEEK_CUR) == 1100);
    t->write("trailer");
    t->close();
    test::Sha256 h;
    h.update(header);
    h.update(content);
    h.update(std::string_view(content).substr(100, 1000));
    h.update("trailer");
    std::size_t total = header.size() + content.size() + 1000 + 7;
    expected = std::to_string(total) + " " + h.hex();
    proto = p;
  };
  lp.run_until_complete(main());
  test::run_until(lp, [&] { return proto->lost; });
  REQUIRE(peer.readline() == expected);
}

TEST_CASE("sendfile falls back to read-and-write for a pipe, or refuses with fallback=false") {
  PythonPeer peer(kPySink);
  int port = peer.port();
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  const std::string content = test::pattern(200000, 11);
  loop::EventLoop lp;
  std::string expected;
  std::shared_ptr<RecordingProtocol> proto;
  auto main = [&]() -> loop::Coroutine<void> {
    auto [t, p] = co_await lp.create_connection(
        [] { return std::make_shared<RecordingProtocol>(); }, "127.0.0.1", port);
    REQUIRE_THROWS_AS(co_await lp.sendfile(*t, pipefd[0], 0, std::nullopt, false),
                      loop::SendfileNotAvailableError);
    // A writer thread fills the pipe while the fallback reads it in the executor.
    auto writer = lp.run_in_executor(nullptr, [&] {
      std::size_t off = 0;
      while (off < content.size()) {
        ssize_t n = ::write(pipefd[1], content.data() + off, content.size() - off);
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
      }
      ::close(pipefd[1]);
    });
    std::size_t sent = co_await lp.sendfile(*t, pipefd[0]);
    co_await writer;
    REQUIRE(sent == content.size());
    REQUIRE(t->get_protocol() == p);  // the stand-in protocol is gone again
    REQUIRE(t->is_reading());
    t->close();
    test::Sha256 h;
    h.update(content);
    expected = std::to_string(content.size()) + " " + h.hex();
    proto = p;
  };
  lp.run_until_complete(main());
  test::run_until(lp, [&] { return proto->lost; });
  REQUIRE(peer.readline() == expected);
  ::close(pipefd[0]);
}

// Helpers for the I/O tests: raw sockets and a Python peer run as a subprocess.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <loop/loop.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace iotest {

/// A socket fd closed on scope exit.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd = o.fd;
      o.fd = -1;
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  operator int() const { return fd; }
};

/// A non-blocking stream socket of `family`.
inline Fd stream_socket(int family) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  return Fd(fd);
}

/// A listening non-blocking socket on `addr` (port 0: any free port); returns the bound address.
inline Fd listener(const loop::SocketAddress& addr, loop::SocketAddress* bound) {
  Fd s = stream_socket(addr.family());
  int one = 1;
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(s, addr.data(), addr.size()) != 0) throw std::runtime_error("bind() failed");
  if (::listen(s, 16) != 0) throw std::runtime_error("listen() failed");
  if (bound) {
    loop::SocketAddress b;
    socklen_t len = loop::SocketAddress::capacity();
    ::getsockname(s, b.data(), &len);
    b.set_size(len);
    *bound = b;
  }
  return s;
}

/// A Python 3 program run as a child; its first line of output is read by first_line().
class PythonPeer {
 public:
  explicit PythonPeer(const std::string& script) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::execlp("python3", "python3", "-c", script.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    out_ = out[0];
  }
  ~PythonPeer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status;
      ::waitpid(pid_, &status, 0);
    }
    if (out_ >= 0) ::close(out_);
  }
  std::string first_line() {
    std::string line;
    char c;
    while (::read(out_, &c, 1) == 1 && c != '\n') line += c;
    return line;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

/// A Python asyncio echo server on 127.0.0.1, port 0; prints its port first.
inline const char* kPythonEchoServer = R"PY(
import asyncio
async def handle(r, w):
    while True:
        data = await r.read(65536)
        if not data:
            break
        w.write(data)
        await w.drain()
    w.close()
async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
)PY";

/// Bytes that are not all alike, so misordered data is noticed.
inline std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 2463534242u;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

}  // namespace iotest

// loop::Socket: a small owner of a socket fd for the sock_* coroutines (Python's socket object,
// minus the I/O: that goes through the loop). Converts to int, so raw fds and Sockets both work.
#pragma once

#include <sys/socket.h>

#include <utility>

#include "loop/address.hpp"

namespace loop {

class Socket {
 public:
  Socket() = default;
  /// Takes ownership of `fd`.
  explicit Socket(int fd) noexcept : fd_(fd) {}
  /// A new non-blocking, close-on-exec socket; throws std::system_error.
  static Socket create(int family, int type = SOCK_STREAM, int proto = 0);
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Socket& operator=(Socket&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { close(); }

  int fileno() const { return fd_; }
  operator int() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  /// Gives the fd up without closing it.
  int release() { return std::exchange(fd_, -1); }
  /// Closes the fd (remove any reader/writer on it first); a second call does nothing.
  void close() noexcept;

  /// bind(2), listen(2), setsockopt(2) with an int value: std::system_error on failure.
  void bind(const SocketAddress& address);
  void listen(int backlog = 100);
  void setsockopt(int level, int option, int value);
  SocketAddress getsockname() const;
  SocketAddress getpeername() const;

 private:
  int fd_ = -1;
};

}  // namespace loop

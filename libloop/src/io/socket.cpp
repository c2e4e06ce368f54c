// loop::Socket: RAII for socket fds, with errors as std::system_error naming the call.
#include "loop/socket.hpp"

#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

namespace loop {

namespace {
[[noreturn]] void fail(const std::string& what) {
  throw std::system_error(errno, std::system_category(), what);
}
}  // namespace

Socket Socket::create(int family, int type, int proto) {
  int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
  if (fd < 0) fail("socket");
  return Socket(fd);
}

void Socket::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Socket::bind(const SocketAddress& address) {
  if (::bind(fd_, address.data(), address.size()) != 0) fail("bind " + address.to_string());
}

void Socket::listen(int backlog) {
  if (::listen(fd_, backlog) != 0) fail("listen");
}

void Socket::setsockopt(int level, int option, int value) {
  if (::setsockopt(fd_, level, option, &value, sizeof value) != 0) fail("setsockopt");
}

SocketAddress Socket::getsockname() const {
  SocketAddress a;
  socklen_t len = SocketAddress::capacity();
  if (::getsockname(fd_, a.data(), &len) != 0) fail("getsockname");
  a.set_size(len);
  return a;
}

SocketAddress Socket::getpeername() const {
  SocketAddress a;
  socklen_t len = SocketAddress::capacity();
  if (::getpeername(fd_, a.data(), &len) != 0) fail("getpeername");
  a.set_size(len);
  return a;
}

}  // namespace loop

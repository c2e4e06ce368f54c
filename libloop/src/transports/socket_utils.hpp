// Socket helpers shared by the stream transports, create_connection and create_server:
// non-blocking resolution, socket creation, waiting for readiness through asio, connect.
#pragma once

#include <asio/generic/stream_protocol.hpp>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "loop/address.hpp"
#include "loop/coroutine.hpp"

namespace loop::detail {

/// One getaddrinfo result.
struct AddrInfo {
  int family = 0;
  int socktype = 0;
  int protocol = 0;
  SocketAddress addr;
  bool operator==(const AddrInfo& o) const {
    return family == o.family && socktype == o.socktype && protocol == o.protocol && addr == o.addr;
  }
};

/// asyncio's _ensure_resolved: a numeric host is converted at once; anything else goes to
/// EventLoop::getaddrinfo (off the loop). An empty host is getaddrinfo's NULL (the wildcard
/// with AI_PASSIVE, else loopback). Throws loop::GaiError naming the host on failure.
Coroutine<std::vector<AddrInfo>> resolve(EventLoop& loop, std::string host, int port, int family,
                                         int type, int proto, int flags);

/// An OSError-like exception: the errno and a message naming what failed.
std::system_error os_error(int err, const std::string& what);

/// An address as asyncio's messages print it: Python's repr of the sockaddr tuple,
/// "('127.0.0.1', 80)", "('::1', 80, 0, 0)", or the quoted path of a unix address ('/tmp/s').
std::string python_repr(const SocketAddress& address);
/// As Python's str() of the address (f'{address}'): the tuple, or the bare unix path.
std::string python_str(const SocketAddress& address);
/// Python's str() of an OSError: "[Errno 111] Connect call failed ('127.0.0.1', 80)" (what()
/// without the ": <strerror>" that std::system_error appends); what() for other exceptions.
std::string python_str(const std::exception& e);

/// Owns a file descriptor until released.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

/// socket(2), non-blocking and close-on-exec; throws std::system_error.
UniqueFd make_socket(int family, int type, int proto);
/// Sets O_NONBLOCK on an fd handed to us (asyncio's sock.setblocking(False)).
void set_nonblocking(int fd);
/// SO_TYPE and the family of a socket fd; throws std::invalid_argument if `fd` is no socket.
std::pair<int, int> socket_family_type(int fd);
/// getsockname / getpeername, an empty address on error.
SocketAddress sockname(int fd);
SocketAddress peername(int fd);

using AsioSocket = asio::generic::stream_protocol::socket;
/// An asio socket object over `fd` (not owned by it: release() before it is destroyed).
AsioSocket asio_socket(EventLoop& loop, int fd, int family);

/// Waits until `sock` is ready; the Future completes from a loop callback (the asio completion
/// only enqueues it), as a selector callback would.
Future<void> wait_ready(EventLoop& loop, AsioSocket& sock, asio::socket_base::wait_type what);

/// asyncio's sock_connect on a non-blocking socket: errors name the address
/// ("Connect call failed 127.0.0.1:1: Connection refused").
// TODO(lead): unify with EventLoop::sock_connect (the socket helper's branch).
Coroutine<void> connect(EventLoop& loop, int fd, int family, SocketAddress addr);

}  // namespace loop::detail

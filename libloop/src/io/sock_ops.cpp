// The low-level socket coroutines (asyncio's loop.sock_recv, sock_sendall, sock_connect, ...):
// try the call at once; when it would block, watch the fd through add_reader/add_writer and
// make the call in the watch's callback. sock_sendfile lives in sock_sendfile.cpp.
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "io/fd_wait.hpp"
#include "loop/dns.hpp"
#include "transports/read_buffer.hpp"
#include "transports/socket_utils.hpp"

namespace loop {

using detail::check_nonblocking_in_debug;
using detail::throw_errno;
using detail::wait_fd_call;
using detail::would_block;

namespace {

// One recv for sock_recv: the bytes received; nothing if the socket would block. Up to the
// read buffer's size, it receives into the thread's read buffer and copies out what came: the
// string holds only the bytes received, nothing is zero-filled (a std::string of nbytes would
// memset all of them on every call, 256 KiB to receive a 1 KiB message), and the kernel copies
// into a page-aligned buffer (io/io_buffer.hpp). The buffer is free here: nothing else runs
// between the recv and the copy. Above that size, into `big` (nbytes long, kept by the caller
// across attempts: one allocation per call).
std::optional<std::string> recv_once(int sock, std::size_t nbytes, std::string& big) {
  if (nbytes <= detail::kReadBufferSize) {
    char* buf = detail::thread_read_buffer();
    ssize_t n = ::recv(sock, buf, nbytes, 0);
    if (n >= 0) return std::string(buf, static_cast<std::size_t>(n));
  } else {
    if (big.empty()) big.resize(nbytes);
    ssize_t n = ::recv(sock, big.data(), nbytes, 0);
    if (n >= 0) {
      big.resize(static_cast<std::size_t>(n));
      return std::move(big);
    }
  }
  if (!would_block(errno)) throw_errno(errno, "sock_recv");
  return std::nullopt;
}

std::optional<std::size_t> recv_into_once(int sock, std::span<char> buf) {
  ssize_t n = ::recv(sock, buf.data(), buf.size(), 0);
  if (n >= 0) return static_cast<std::size_t>(n);
  if (!would_block(errno)) throw_errno(errno, "sock_recv_into");
  return std::nullopt;
}

// One send for sock_sendall, from `pos` on: whether everything is sent. Would block: nothing
// sent, try again when writable (asyncio's first attempt counts it as 0 bytes sent).
bool send_once(int sock, std::string_view data, std::size_t& pos) {
  // MSG_NOSIGNAL: a peer that went away gives EPIPE, never a SIGPIPE that kills the process.
  ssize_t n = ::send(sock, data.data() + pos, data.size() - pos, MSG_NOSIGNAL);
  if (n >= 0) {
    pos += static_cast<std::size_t>(n);
  } else if (!would_block(errno)) {
    throw_errno(errno, "sock_sendall");
  }
  return pos == data.size();
}

// An accepted connection while it is a future's result: closed if the task that waits for it
// is cancelled before taking it (asyncio's socket object is collected and closes).
struct Accepted {
  int fd = -1;
  SocketAddress peer;
  Accepted(int f, const SocketAddress& p) : fd(f), peer(p) {}
  Accepted(Accepted&& o) noexcept : fd(std::exchange(o.fd, -1)), peer(o.peer) {}
  Accepted& operator=(Accepted&&) = delete;
  ~Accepted() {
    if (fd >= 0) ::close(fd);
  }
};

std::optional<Accepted> accept_once(int sock) {
  SocketAddress peer;
  socklen_t len = SocketAddress::capacity();
  int conn = ::accept4(sock, peer.data(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (conn >= 0) {
    peer.set_size(len);
    return std::optional<Accepted>(std::in_place, conn, peer);
  }
  if (!would_block(errno)) throw_errno(errno, "sock_accept");
  return std::nullopt;
}

}  // namespace

// Each coroutine tries its call at once and waits only if it would block; the waiting is
// asyncio's: the call is made again in the fd's callback (detail::wait_fd_call), not when the
// task resumes, so what arrives in between stays in the socket for the next call.

Coroutine<std::string> EventLoop::sock_recv(int sock, std::size_t nbytes) {
  check_closed();
  check_nonblocking_in_debug(*this, sock);
  // As Python's socket.recv(0): nothing asked, nothing to wait for (recv(2) of 0 bytes on an
  // idle unix socket would say EAGAIN, and the wait would end on data it does not take).
  if (nbytes == 0) co_return std::string();
  std::string big;  // above the read buffer's size: in this frame, alive while the watch may run
  if (auto got = recv_once(sock, nbytes, big)) co_return std::move(*got);
  co_return co_await detail::take(wait_fd_call<std::string>(
      *this, sock, 0, [sock, nbytes, &big] { return recv_once(sock, nbytes, big); }));
}

Coroutine<std::size_t> EventLoop::sock_recv_into(int sock, std::span<char> buf) {
  check_closed();
  check_nonblocking_in_debug(*this, sock);
  if (buf.empty()) co_return 0;  // as sock_recv(sock, 0)
  if (auto n = recv_into_once(sock, buf)) co_return *n;
  // The callback receives into the caller's buffer: the caller awaits this call, so the buffer
  // lives until the future is done, and a cancelled future's callback does nothing.
  co_return co_await wait_fd_call<std::size_t>(*this, sock, 0,
                                               [sock, buf] { return recv_into_once(sock, buf); });
}

Coroutine<void> EventLoop::sock_sendall(int sock, std::string_view data) {
  check_closed();
  check_nonblocking_in_debug(*this, sock);
  if (data.empty()) co_return;
  // asyncio sends once, then waits for room with the rest: one send per writable event, the
  // future done when the last byte went.
  std::size_t pos = 0;
  if (send_once(sock, data, pos)) co_return;
  co_await wait_fd_call<void>(*this, sock, 1,
                              [sock, data, pos]() mutable { return send_once(sock, data, pos); });
}

Coroutine<void> EventLoop::sock_connect(int sock, SocketAddress address) {
  check_closed();
  check_nonblocking_in_debug(*this, sock);
  if (::connect(sock, address.data(), address.size()) == 0) co_return;
  int err = errno;
  if (err != EINPROGRESS && !would_block(err))
    throw_errno(err, "Connect call failed " + detail::python_str(address));
  // asyncio's _sock_connect_cb: writable means the attempt finished; SO_ERROR tells how.
  co_await wait_fd_call<void>(*this, sock, 1, [sock, &address] {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == EINPROGRESS || would_block(err)) return false;  // still connecting
    if (err != 0) throw_errno(err, "Connect call failed " + detail::python_str(address));
    return true;
  });
}

Coroutine<void> EventLoop::sock_connect(int sock, std::string host, unsigned short port) {
  check_closed();
  check_nonblocking_in_debug(*this, sock);
  int family = 0, type = 0, proto = 0;
  socklen_t len = sizeof family;
  if (::getsockopt(sock, SOL_SOCKET, SO_DOMAIN, &family, &len) != 0)
    throw_errno(errno, "sock_connect");
  len = sizeof type;
  ::getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len);
  len = sizeof proto;
  ::getsockopt(sock, SOL_SOCKET, SO_PROTOCOL, &proto, &len);
  SocketAddress address;
  if (family == AF_UNIX) {
    address = SocketAddress::from_unix_path(host);  // a path needs no resolving (asyncio)
  } else {
    // A numeric address needs no trip to the executor (asyncio's _ipaddr_info).
    bool numeric = false;
    try {
      address = SocketAddress::from_ip(host, port);
      numeric = address.family() == family;
    } catch (const std::invalid_argument&) {
    }
    if (!numeric) {
      auto infos = co_await getaddrinfo(host, std::to_string(port), family, type, proto);
      if (infos.empty()) throw GaiError(EAI_NONAME, "getaddrinfo('" + host + "') returned nothing");
      address = infos.front().address;
    }
  }
  co_await sock_connect(sock, address);
}

Coroutine<std::pair<int, SocketAddress>> EventLoop::sock_accept(int sock) {
  check_closed();
  check_nonblocking_in_debug(*this, sock);
  std::optional<Accepted> got = accept_once(sock);
  if (!got)
    got.emplace(co_await detail::take(
        wait_fd_call<Accepted>(*this, sock, 0, [sock] { return accept_once(sock); })));
  co_return std::pair<int, SocketAddress>(std::exchange(got->fd, -1), got->peer);
}

}  // namespace loop

// The low-level socket coroutines (asyncio's loop.sock_recv, sock_sendall, sock_connect, ...):
// try the call at once; when it would block, wait for the fd through add_reader/add_writer and
// try again. sock_sendfile lives in sock_sendfile.cpp.
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "io/fd_wait.hpp"
#include "loop/dns.hpp"
#include "transports/read_buffer.hpp"

namespace loop {

using detail::check_nonblocking_in_debug;
using detail::throw_errno;
using detail::wait_fd;
using detail::would_block;

Coroutine<std::string> EventLoop::sock_recv(int sock, std::size_t nbytes) {
  check_closed();
  check_nonblocking_in_debug(*this, sock);
  // As Python's socket.recv(0): nothing asked, nothing to wait for (recv(2) of 0 bytes on an
  // idle unix socket would say EAGAIN, and the wait would end on data it does not take).
  if (nbytes == 0) co_return std::string();
  for (;;) {
    // Up to the read buffer's size, receive into the thread's read buffer and copy out what
    // came: the string holds only the bytes received, nothing is zero-filled (a std::string of
    // nbytes would memset all of them on every call, 256 KiB to receive a 1 KiB message), and
    // the kernel copies into a page-aligned buffer (io/io_buffer.hpp). The buffer is
    // free here: nothing else runs between the recv and the copy.
    if (nbytes <= detail::kReadBufferSize) {
      char* buf = detail::thread_read_buffer();
      ssize_t n = ::recv(sock, buf, nbytes, 0);
      if (n >= 0) co_return std::string(buf, static_cast<std::size_t>(n));
    } else {
      std::string data(nbytes, '\0');
      ssize_t n = ::recv(sock, data.data(), nbytes, 0);
      if (n >= 0) {
        data.resize(static_cast<std::size_t>(n));
        co_return data;
      }
    }
    if (!would_block(errno)) throw_errno(errno, "sock_recv");
    co_await wait_fd(*this, sock, 0);
  }
}

Coroutine<std::size_t> EventLoop::sock_recv_into(int sock, std::span<char> buf) {
  check_closed();
  check_nonblocking_in_debug(*this, sock);
  if (buf.empty()) co_return 0;  // as sock_recv(sock, 0)
  for (;;) {
    ssize_t n = ::recv(sock, buf.data(), buf.size(), 0);
    if (n >= 0) co_return static_cast<std::size_t>(n);
    if (!would_block(errno)) throw_errno(errno, "sock_recv_into");
    co_await wait_fd(*this, sock, 0);
  }
}

Coroutine<void> EventLoop::sock_sendall(int sock, std::string_view data) {
  check_closed();
  check_nonblocking_in_debug(*this, sock);
  std::size_t pos = 0;
  while (pos < data.size()) {
    // MSG_NOSIGNAL: a peer that went away gives EPIPE, never a SIGPIPE that kills the process.
    ssize_t n = ::send(sock, data.data() + pos, data.size() - pos, MSG_NOSIGNAL);
    if (n >= 0) {
      pos += static_cast<std::size_t>(n);
      continue;
    }
    if (!would_block(errno)) throw_errno(errno, "sock_sendall");
    co_await wait_fd(*this, sock, 1);
  }
}

Coroutine<void> EventLoop::sock_connect(int sock, SocketAddress address) {
  check_closed();
  check_nonblocking_in_debug(*this, sock);
  if (::connect(sock, address.data(), address.size()) == 0) co_return;
  int err = errno;
  if (err != EINPROGRESS && !would_block(err))
    throw_errno(err, "Connect call failed " + address.to_string());
  // asyncio's _sock_connect_cb: writable means the attempt finished; SO_ERROR tells how.
  for (;;) {
    co_await wait_fd(*this, sock, 1);
    socklen_t len = sizeof err;
    if (::getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0) co_return;
    if (err != EINPROGRESS && !would_block(err))
      throw_errno(err, "Connect call failed " + address.to_string());
  }
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
  for (;;) {
    SocketAddress peer;
    socklen_t len = SocketAddress::capacity();
    int conn = ::accept4(sock, peer.data(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn >= 0) {
      peer.set_size(len);
      co_return std::pair<int, SocketAddress>(conn, peer);
    }
    if (!would_block(errno)) throw_errno(errno, "sock_accept");
    co_await wait_fd(*this, sock, 0);
  }
}

}  // namespace loop

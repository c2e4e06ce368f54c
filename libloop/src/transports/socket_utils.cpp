// Socket helpers for the transports: resolution off the loop, socket creation, connect.
#include "transports/socket_utils.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>

#include "loop/dns.hpp"
#include "loop/errors.hpp"
#include "loop/executor_impl.hpp"
#include "loop/task.hpp"

namespace loop::detail {

std::system_error os_error(int err, const std::string& what) {
  return std::system_error(err, std::generic_category(), what);
}

std::string python_repr(const SocketAddress& a) {
  if (a.family() == AF_UNIX) return "'" + a.host() + "'";
  return python_str(a);
}

std::string python_str(const SocketAddress& a) {
  if (a.family() == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(a.data());
    return "('" + a.host() + "', " + std::to_string(a.port()) + ", " +
           std::to_string(ntohl(in6->sin6_flowinfo)) + ", " + std::to_string(in6->sin6_scope_id) +
           ")";
  }
  if (a.family() == AF_INET) return "('" + a.host() + "', " + std::to_string(a.port()) + ")";
  return a.host();
}

std::string python_str(const std::exception& e) {
  auto* se = dynamic_cast<const std::system_error*>(&e);
  if (!se || dynamic_cast<const MultipleConnectErrors*>(&e)) return e.what();
  std::string msg = se->what();
  const std::string suffix = ": " + se->code().message();
  if (msg == se->code().message()) {
    msg.clear();
  } else if (msg.size() >= suffix.size() &&
             msg.compare(msg.size() - suffix.size(), suffix.size(), suffix) == 0) {
    msg.resize(msg.size() - suffix.size());
  }
  if (msg.empty()) msg = se->code().message();
  return "[Errno " + std::to_string(se->code().value()) + "] " + msg;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

UniqueFd make_socket(int family, int type, int proto) {
  int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
  if (fd < 0) throw os_error(errno, "socket(" + std::to_string(family) + ") failed");
  return UniqueFd(fd);
}

void set_nonblocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    throw os_error(errno, "cannot make socket " + std::to_string(fd) + " non-blocking");
}

std::pair<int, int> socket_family_type(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
    throw std::invalid_argument("not a socket: fd " + std::to_string(fd));
  SocketAddress a;
  socklen_t alen = SocketAddress::capacity();
  if (::getsockname(fd, a.data(), &alen) < 0)
    throw std::invalid_argument("not a socket: fd " + std::to_string(fd));
  return {a.family(), type};
}

SocketAddress sockname(int fd) {
  SocketAddress a;
  socklen_t len = SocketAddress::capacity();
  if (::getsockname(fd, a.data(), &len) == 0) a.set_size(len);
  return a;
}

SocketAddress peername(int fd) {
  SocketAddress a;
  socklen_t len = SocketAddress::capacity();
  if (::getpeername(fd, a.data(), &len) == 0) a.set_size(len);
  return a;
}

AsioSocket asio_socket(EventLoop& loop, int fd, int family) {
  // e.g. sock_connect waited on it with add_writer: its idle registration in the Poller would
  // otherwise report the fd once more (and keep a stale watch).
  loop.release_idle_fd_watch(fd);
  return AsioSocket(loop.io_context(), asio::generic::stream_protocol(family, SOCK_STREAM), fd);
}

Future<void> wait_ready(EventLoop& loop, AsioSocket& sock, asio::socket_base::wait_type what) {
  Future<void> fut = loop.create_future<void>();
  sock.async_wait(what, [&loop, fut](const asio::error_code& ec) {
    if (ec == asio::error::operation_aborted || loop.is_closed()) return;
    loop.call_soon([fut] {
      if (!fut.done()) fut.set_result();
    });
  });
  return fut;
}

namespace {

// Numeric hosts need no resolver (asyncio's _ipaddr_info).
std::optional<std::vector<AddrInfo>> numeric_info(const std::string& host, int port, int family,
                                                  int type, int proto) {
  if (host.empty() || port < 0) return std::nullopt;
  SocketAddress a;
  try {
    a = SocketAddress::from_ip(host, static_cast<unsigned short>(port));
  } catch (const std::invalid_argument&) {
    return std::nullopt;
  }
  if (a.family() == AF_INET6 && host.find('%') != std::string::npos) return std::nullopt;
  if (family != AF_UNSPEC && family != a.family()) return std::nullopt;
  // asyncio's _ipaddr_info: the protocol follows the socket type (a TCP or UDP proto given
  // with the other type is overridden); other protocols and types go to getaddrinfo.
  if (proto != 0 && proto != IPPROTO_TCP && proto != IPPROTO_UDP) return std::nullopt;
  if (type == SOCK_STREAM)
    proto = IPPROTO_TCP;
  else if (type == SOCK_DGRAM)
    proto = IPPROTO_UDP;
  else
    return std::nullopt;
  return std::vector<AddrInfo>{{a.family(), type, proto, a}};
}

}  // namespace

Coroutine<std::vector<AddrInfo>> resolve(EventLoop& loop, std::string host, int port, int family,
                                         int type, int proto, int flags) {
  if (auto numeric = numeric_info(host, port, family, type, proto)) co_return *numeric;
  // Named arguments, not temporaries: GCC 12 mis-copies a prvalue std::string argument of a
  // coroutine awaited inside another coroutine (its SSO pointer is left dangling).
  std::string service = port >= 0 ? std::to_string(port) : std::string();
  std::string node = host;
  auto found = co_await loop.getaddrinfo(node, service, family, type, proto, flags);
  std::vector<AddrInfo> out;
  for (auto& f : found) {
    AddrInfo info{f.family, f.type, f.proto, f.address};
    if (std::find(out.begin(), out.end(), info) == out.end()) out.push_back(info);
  }
  co_return out;
}

Coroutine<void> connect(EventLoop& loop, int fd, int family, SocketAddress addr) {
  const std::string what = "Connect call failed " + python_str(addr);
  for (;;) {
    if (::connect(fd, addr.data(), addr.size()) == 0) co_return;
    if (errno == EINTR) continue;
    if (errno != EINPROGRESS && errno != EAGAIN) throw os_error(errno, what);
    break;
  }
  AsioSocket sock = asio_socket(loop, fd, family);
  struct Release {  // the fd stays ours; the asio object only watches it
    AsioSocket& s;
    ~Release() {
      asio::error_code ec;
      s.release(ec);
    }
  } release{sock};
  for (;;) {
    co_await wait_ready(loop, sock, asio::socket_base::wait_write);
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err == 0) co_return;
    if (err != EINPROGRESS && err != EAGAIN && err != EINTR) throw os_error(err, what);
  }
}

}  // namespace loop::detail

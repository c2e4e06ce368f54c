// create_connection, create_unix_connection, connect_accepted_socket, create_server and
// create_unix_server: asyncio's base_events / unix_events versions, option by option.
#include "loop/connections.hpp"

#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "loop/tasks.hpp"
#include "tls/ssl_socket.hpp"
#include "transports/socket_transport.hpp"
#include "transports/socket_utils.hpp"

namespace loop::detail {

namespace {

// asyncio's checks of ssl_handshake_timeout, common to every function.
void check_handshake_timeout(const std::shared_ptr<SSLContext>& ssl,
                             const std::optional<double>& handshake_timeout) {
  if (handshake_timeout && !ssl)
    throw std::invalid_argument("ssl_handshake_timeout is only meaningful with ssl");
}

// A client's TLS options (nullopt without ssl). server_hostname defaults to `host`; without
// one it is required (`missing` is asyncio's message); "" disables hostname matching.
std::optional<TlsOptions> client_tls(const ConnectionOptions& o, const std::string& host,
                                     const char* missing) {
  if (o.server_hostname && !o.ssl)
    throw std::invalid_argument("server_hostname is only meaningful with ssl");
  check_handshake_timeout(o.ssl, o.ssl_handshake_timeout);
  if (!o.ssl) return std::nullopt;
  std::optional<std::string> hostname = o.server_hostname;
  if (!hostname) {
    if (host.empty()) throw std::invalid_argument(missing);
    hostname = host;
  }
  return TlsOptions{o.ssl, false, std::move(hostname), o.ssl_handshake_timeout};
}

void check_stream_socket(int fd, std::optional<int> family, const char* expected) {
  auto [fam, type] = socket_family_type(fd);
  if (type != SOCK_STREAM || (family && fam != *family))
    throw std::invalid_argument(std::string("A ") + expected + " was expected, got fd " +
                                std::to_string(fd));
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// asyncio's _create_connection_transport: the protocol, the transport, and a waiter done
// once connection_made has run (with ssl: once the handshake is done).
Coroutine<std::shared_ptr<Transport>> connection_transport(EventLoop& loop, UniqueFd sock,
                                                           ProtocolFactory& factory,
                                                           std::optional<TlsOptions> tls = {}) {
  std::shared_ptr<Protocol> protocol = factory();
  if (!protocol) throw std::invalid_argument("protocol_factory returned no protocol");
  Future<void> waiter = loop.create_future<void>();
  std::shared_ptr<SocketTransport> transport;
  std::shared_ptr<Transport> result;
  if (tls) {
    auto conn = make_ssl_socket_transport(loop, sock.release(), protocol, *tls, waiter);
    transport = std::move(conn.below);
    result = conn.ssl->app_transport();
  } else {
    transport = std::make_shared<SocketTransport>(loop, sock.release(), protocol);
    transport->start(waiter);
    result = transport;
  }
  std::exception_ptr failed;
  try {
    co_await waiter;
  } catch (...) {
    failed = std::current_exception();
  }
  if (failed) {
    transport->close();
    std::rethrow_exception(failed);
  }
  co_return result;
}

// asyncio's _connect_sock: a socket for one address, bound to a local address of its family
// if asked, connected. Its errors are added to `errors` and rethrown.
Coroutine<UniqueFd> connect_sock(EventLoop& loop, std::vector<std::exception_ptr>& errors,
                                 const AddrInfo& info, const std::vector<AddrInfo>& local) {
  try {
    UniqueFd sock = make_socket(info.family, info.socktype, info.protocol);
    if (!local.empty()) {
      std::optional<std::system_error> bind_error;
      bool bound = false;
      for (auto& l : local) {
        if (l.family != info.family) continue;
        if (::bind(sock.get(), l.addr.data(), l.addr.size()) == 0) {
          bound = true;
          break;
        }
        int err = errno;
        bind_error = os_error(err, "error while attempting to bind on address " +
                                       python_repr(l.addr) + ": " + lower(std::strerror(err)));
        errors.push_back(std::make_exception_ptr(*bind_error));
      }
      if (!bound) {
        if (bind_error) {
          errors.pop_back();
          throw *bind_error;
        }
        throw os_error(EADDRNOTAVAIL, "no matching local address with family=" +
                                          std::to_string(info.family) + " found");
      }
    }
    co_await connect(loop, sock.get(), info.family, info.addr);
    co_return sock;
  } catch (const std::system_error&) {
    errors.push_back(std::current_exception());
    throw;
  }
}

// Is there a server behind the unix socket file at `path`? Used to replace stale files.
bool unix_socket_alive(const std::string& path) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (probe.get() < 0) return true;  // cannot tell: leave the file alone
  SocketAddress addr = SocketAddress::from_unix_path(path);
  if (::connect(probe.get(), addr.data(), addr.size()) == 0) return true;
  return errno != ECONNREFUSED;  // EAGAIN: a live server with a full backlog
}

}  // namespace

Coroutine<std::shared_ptr<Transport>> create_connection(EventLoop& loop, ProtocolFactory factory,
                                                        std::string host, int port,
                                                        ConnectionOptions o) {
  loop.check_closed();
  std::optional<TlsOptions> tls =
      client_tls(o, host, "You must set server_hostname when using ssl without a host");
  UniqueFd sock;
  if (!host.empty() || port != 0) {
    if (o.sock >= 0)
      throw std::invalid_argument("host/port and sock can not be specified at the same time");
    auto infos = co_await resolve(loop, host, port, o.family, SOCK_STREAM, o.proto, o.flags);
    if (infos.empty()) throw std::runtime_error("getaddrinfo() returned empty list");
    std::vector<AddrInfo> local;
    if (o.local_addr) {
      local = co_await resolve(loop, o.local_addr->first, o.local_addr->second, o.family,
                               SOCK_STREAM, o.proto, o.flags);
      if (local.empty()) throw std::runtime_error("getaddrinfo() returned empty list");
    }
    // Address by address; the first that connects wins.
    std::vector<std::exception_ptr> errors;
    for (auto& info : infos) {
      try {
        sock = co_await connect_sock(loop, errors, info, local);
        break;
      } catch (const std::system_error&) {
        continue;
      }
    }
    if (sock.get() < 0) {
      if (errors.size() == 1) std::rethrow_exception(errors.front());
      // asyncio compares and joins str(exc): "[Errno 111] Connect call failed (...)".
      std::vector<std::string> msgs;
      for (auto& e : errors) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          msgs.push_back(python_str(ex));
        }
      }
      if (std::all_of(msgs.begin(), msgs.end(), [&](auto& m) { return m == msgs.front(); }))
        std::rethrow_exception(errors.front());
      std::string joined;
      for (auto& m : msgs) joined += (joined.empty() ? "" : ", ") + m;
      std::error_code first;
      try {
        std::rethrow_exception(errors.front());
      } catch (const std::system_error& ex) {
        first = ex.code();
      } catch (const std::exception&) {
      }
      throw MultipleConnectErrors(first, "Multiple exceptions: " + joined, std::move(errors));
    }
  } else {
    if (o.sock < 0)
      throw std::invalid_argument("host and port was not specified and no sock specified");
    check_stream_socket(o.sock, std::nullopt, "Stream Socket");
    set_nonblocking(o.sock);
    sock = UniqueFd(o.sock);
  }
  co_return co_await connection_transport(loop, std::move(sock), factory, std::move(tls));
}

Coroutine<std::shared_ptr<Transport>> create_unix_connection(EventLoop& loop,
                                                             ProtocolFactory factory,
                                                             std::string path,
                                                             ConnectionOptions o) {
  loop.check_closed();
  // No host to default to: asyncio requires server_hostname here.
  std::optional<TlsOptions> tls =
      client_tls(o, std::string(), "you have to pass server_hostname when using ssl");
  UniqueFd sock;
  if (!path.empty()) {
    if (o.sock >= 0)
      throw std::invalid_argument("path and sock can not be specified at the same time");
    SocketAddress addr = SocketAddress::from_unix_path(path);
    sock = make_socket(AF_UNIX, SOCK_STREAM, 0);
    co_await connect(loop, sock.get(), AF_UNIX, addr);
  } else {
    if (o.sock < 0) throw std::invalid_argument("no path and sock were specified");
    check_stream_socket(o.sock, AF_UNIX, "UNIX Domain Stream Socket");
    set_nonblocking(o.sock);
    sock = UniqueFd(o.sock);
  }
  co_return co_await connection_transport(loop, std::move(sock), factory, std::move(tls));
}

Coroutine<std::shared_ptr<Transport>> connect_accepted_socket(EventLoop& loop,
                                                              ProtocolFactory factory, int fd,
                                                              ConnectionOptions o) {
  loop.check_closed();
  check_handshake_timeout(o.ssl, o.ssl_handshake_timeout);
  // asyncio's connect_accepted_socket takes only sock, ssl and ssl_handshake_timeout: an option
  // it would ignore is refused rather than silently dropped.
  if (o.server_hostname)  // the socket is the server side
    throw std::invalid_argument("server_hostname is not used by connect_accepted_socket");
  if (o.family != AF_UNSPEC || o.proto != 0 || o.flags != 0 || o.local_addr || o.sock >= 0)
    throw std::invalid_argument(
        "connect_accepted_socket takes the socket as its argument and only ssl and "
        "ssl_handshake_timeout as options (family, proto, flags, local_addr and sock are for "
        "create_connection)");
  check_stream_socket(fd, std::nullopt, "Stream Socket");
  set_nonblocking(fd);
  std::optional<TlsOptions> tls;
  if (o.ssl) tls = TlsOptions{o.ssl, true, std::nullopt, o.ssl_handshake_timeout};
  co_return co_await connection_transport(loop, UniqueFd(fd), factory, std::move(tls));
}

namespace {
// asyncio's _create_server_getaddrinfo.
Coroutine<std::vector<AddrInfo>> resolve_server_host(EventLoop& loop, std::string host, int port,
                                                     int family, int flags) {
  auto found = co_await resolve(loop, host, port, family, SOCK_STREAM, 0, flags);
  if (found.empty()) throw std::runtime_error("getaddrinfo('" + host + "') returned empty list");
  co_return found;
}
}  // namespace

Coroutine<std::shared_ptr<Server>> create_server(EventLoop& loop, ProtocolFactory factory,
                                                 std::vector<std::string> hosts, int port,
                                                 ServerOptions o) {
  loop.check_closed();
  check_handshake_timeout(o.ssl, o.ssl_handshake_timeout);
  std::vector<UniqueFd> socks;
  if (port >= 0 || !hosts.empty()) {
    if (o.sock >= 0)
      throw std::invalid_argument("host/port and sock can not be specified at the same time");
    bool reuse_address = o.reuse_address.value_or(true);
    if (hosts.empty()) hosts.push_back("");  // every interface
    // As asyncio: one task per host (_create_server_getaddrinfo), awaited through gather, so
    // that create_server takes as many loop iterations as asyncio's, a numeric host included.
    std::vector<Future<std::vector<AddrInfo>>> lookups;
    for (auto& host : hosts)
      lookups.push_back(loop.create_task(resolve_server_host(loop, host, port, o.family, o.flags)));
    auto gathered = gather(std::move(lookups));
    auto found_per_host = co_await gathered;
    std::vector<AddrInfo> infos;
    for (auto& found : found_per_host)
      for (auto& f : found)
        if (std::find(infos.begin(), infos.end(), f) == infos.end()) infos.push_back(f);
    for (auto& info : infos) {
      UniqueFd s;
      try {
        s = make_socket(info.family, info.socktype, info.protocol);
      } catch (const std::system_error&) {
        continue;  // a family this host cannot do (asyncio warns and skips it)
      }
      int one = 1;
      if (reuse_address) ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (o.reuse_port && ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        throw os_error(errno, "setsockopt(SO_REUSEPORT) failed");
      // One socket per family: no dual-stack IPv6 socket that would also take IPv4.
      if (info.family == AF_INET6)
        ::setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      if (::bind(s.get(), info.addr.data(), info.addr.size()) < 0) {
        int err = errno;
        throw os_error(err, "error while attempting to bind on address " + python_repr(info.addr) +
                                ": " + lower(std::strerror(err)));
      }
      socks.push_back(std::move(s));
    }
  } else {
    if (o.sock < 0) throw std::invalid_argument("Neither host/port nor sock were specified");
    check_stream_socket(o.sock, std::nullopt, "Stream Socket");
    set_nonblocking(o.sock);
    socks.emplace_back(o.sock);
  }
  std::vector<int> fds;
  for (auto& s : socks) fds.push_back(s.release());
  auto server = std::make_shared<Server>(loop, std::move(fds), std::move(factory), o.backlog);
  if (o.ssl) server->set_ssl(o.ssl, o.ssl_handshake_timeout);
  if (o.start_serving) co_await server->start_serving();
  co_return server;
}

Coroutine<std::shared_ptr<Server>> create_unix_server(EventLoop& loop, ProtocolFactory factory,
                                                      std::string path, ServerOptions o) {
  loop.check_closed();
  check_handshake_timeout(o.ssl, o.ssl_handshake_timeout);
  UniqueFd sock;
  if (!path.empty()) {
    if (o.sock >= 0)
      throw std::invalid_argument("path and sock can not be specified at the same time");
    SocketAddress addr = SocketAddress::from_unix_path(path);
    sock = make_socket(AF_UNIX, SOCK_STREAM, 0);
    const bool abstract = SocketAddress::is_abstract_unix_path(path);
    const bool set_mode = o.mode && !abstract;
    if (set_mode) {
      if (*o.mode > 07777) throw std::invalid_argument("mode must be a permission mask (0-07777)");
      // Linux creates the file with the socket inode's mode & ~umask.
      if (::fchmod(sock.get(), static_cast<mode_t>(*o.mode)) < 0)
        throw os_error(errno, "cannot set the mode of the socket for '" + path + "'");
    }
    if (!abstract) {
      struct stat st;
      if (::stat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
          // asyncio's message (its bind fails on the file with EADDRINUSE).
          throw os_error(EADDRINUSE, "Address '" + path + "' is already in use");
        // A socket file: stale if nobody accepts behind it (a server that died).
        if (!unix_socket_alive(path)) ::unlink(path.c_str());
      }
    }
    if (::bind(sock.get(), addr.data(), addr.size()) < 0) {
      int err = errno;
      const std::string shown = addr.host();  // "@name" for "\0name": a NUL would end what()
      if (err == EADDRINUSE) throw os_error(err, "Address '" + shown + "' is already in use");
      throw os_error(err, "error while attempting to bind on address '" + shown + "'");
    }
    // Then exactly the mode asked for, whatever the umask took away.
    if (set_mode && ::chmod(path.c_str(), static_cast<mode_t>(*o.mode)) < 0) {
      int err = errno;
      ::unlink(path.c_str());
      throw os_error(err, "cannot set the mode of '" + path + "'");
    }
  } else {
    if (o.sock < 0) throw std::invalid_argument("path was not specified, and no sock specified");
    check_stream_socket(o.sock, AF_UNIX, "UNIX Domain Stream Socket");
    set_nonblocking(o.sock);
    sock = UniqueFd(o.sock);
  }
  std::vector<int> fds{sock.release()};
  auto server = std::make_shared<Server>(loop, std::move(fds), std::move(factory), o.backlog);
  if (o.ssl) server->set_ssl(o.ssl, o.ssl_handshake_timeout);
  if (o.start_serving) co_await server->start_serving();
  co_return server;
}

}  // namespace loop::detail

// The keyword arguments of create_connection / create_server and friends, as structs.
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace loop {

class SSLContext;  // <loop/ssl.hpp>
class Transport;

/// What create_connection and friends return: the transport and the factory's protocol.
template <class P>
using ConnectionPair = std::pair<std::shared_ptr<Transport>, std::shared_ptr<P>>;

/// create_connection's options (asyncio: family, proto, flags, sock, local_addr, ssl...).
struct ConnectionOptions {
  int family = AF_UNSPEC;  // passed to getaddrinfo with host
  int proto = 0;
  int flags = 0;
  /// An already connected stream socket to use instead of host/port; the transport takes
  /// ownership of it (closes it with the connection). -1: none.
  int sock = -1;
  /// (host, port) to bind to before connecting; resolved like host.
  std::optional<std::pair<std::string, int>> local_addr;
  /// TLS over the connection; the result is returned once the handshake is done.
  std::shared_ptr<SSLContext> ssl;
  /// With ssl: the name sent (SNI) and matched against the certificate. Defaults to host;
  /// required without one (std::invalid_argument); "" disables hostname matching.
  std::optional<std::string> server_hostname;
  /// With ssl: seconds the handshake may take (nullopt: 60).
  std::optional<double> ssl_handshake_timeout;
};

/// create_server's options (asyncio: family, flags, sock, backlog, reuse_address...).
struct ServerOptions {
  int family = AF_UNSPEC;
  int flags = AI_PASSIVE;
  /// An already bound stream socket to listen on instead of host/port; the server owns it.
  int sock = -1;
  int backlog = 100;
  /// SO_REUSEADDR; nullopt means on (asyncio's default on UNIX).
  std::optional<bool> reuse_address;
  bool reuse_port = false;
  /// Start accepting at once; otherwise call Server::start_serving / serve_forever.
  bool start_serving = true;
  /// TLS on every accepted connection (a server-side context with a certificate); a failed
  /// handshake closes that connection only.
  std::shared_ptr<SSLContext> ssl;
  std::optional<double> ssl_handshake_timeout;
  /// create_unix_server with a path: the socket file's permissions (e.g. 0600), exactly,
  /// whatever the umask. It never has wider ones, not even between bind and chmod: the
  /// socket's own mode is set before bind, so the file is created with at most these.
  /// nullopt: what bind gives (0777 & ~umask). Ignored for abstract ('@' or NUL) names.
  std::optional<unsigned> mode;
};

}  // namespace loop

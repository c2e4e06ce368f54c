// The TLS layer put on a socket (asyncio's _make_ssl_transport): the socket transport below,
// the SSLProtocol in between, the application protocol above. Used by create_connection and
// friends (client side, connect_accepted_socket) and by Server (server side).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "loop/server.hpp"
#include "loop/sslproto.hpp"
#include "transports/socket_transport.hpp"

namespace loop::detail {

/// The ssl options of one connection, checked by the caller.
struct TlsOptions {
  std::shared_ptr<SSLContext> context;
  bool server_side = false;
  std::optional<std::string> server_hostname;
  std::optional<double> handshake_timeout;
};

/// A SocketTransport on `fd` (owned from now on) whose protocol is an SSLProtocol for
/// `app_protocol`; started: the handshake begins in the next iteration and `waiter` is done
/// when it ends. The application's connection_made runs once the handshake is done.
struct SslSocket {
  std::shared_ptr<SocketTransport> below;
  std::shared_ptr<SSLProtocol> ssl;
};
SslSocket make_ssl_socket_transport(EventLoop& loop, int fd, std::shared_ptr<Protocol> app_protocol,
                                    const TlsOptions& tls, Future<void> waiter,
                                    std::shared_ptr<Server> server = nullptr,
                                    std::optional<SocketAddress> peer = std::nullopt);

/// Server side (asyncio's _accept_connection2 with sslcontext): a failed handshake closes the
/// connection and reaches the exception handler only in debug mode.
void accept_ssl_connection(EventLoop& loop, int fd, SocketAddress peer,
                           std::shared_ptr<Server> server, std::shared_ptr<Protocol> app_protocol,
                           const TlsOptions& tls);

}  // namespace loop::detail

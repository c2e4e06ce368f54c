// The TLS layer on socket transports: asyncio's _make_ssl_transport and the ssl half of
// _accept_connection2.
#include "tls/ssl_socket.hpp"

#include "loop/exception_context.hpp"

namespace loop::detail {

SslSocket make_ssl_socket_transport(EventLoop& loop, int fd, std::shared_ptr<Protocol> app_protocol,
                                    const TlsOptions& tls, Future<void> waiter,
                                    std::shared_ptr<Server> server,
                                    std::optional<SocketAddress> peer) {
  // The transport first (it owns fd from here, also if SSLProtocol::make throws), so that
  // the handshake's trace records carry its id.
  auto below =
      std::make_shared<SocketTransport>(loop, fd, nullptr, std::move(server), std::move(peer));
  SSLProtocolOptions options;
  options.server_side = tls.server_side;
  options.server_hostname = tls.server_hostname;
  options.ssl_handshake_timeout = tls.handshake_timeout;
  options.trace_id = below->id();
  std::shared_ptr<SSLProtocol> ssl;
  try {
    ssl = SSLProtocol::make(loop, std::move(app_protocol), tls.context, std::move(waiter),
                            std::move(options));
  } catch (...) {
    below->abort();  // never started: closes fd when the last reference goes
    throw;
  }
  below->set_protocol(ssl);
  below->start(std::nullopt);  // the SSLProtocol's waiter is the one that matters
  return {std::move(below), std::move(ssl)};
}

void accept_ssl_connection(EventLoop& loop, int fd, SocketAddress peer,
                           std::shared_ptr<Server> server, std::shared_ptr<Protocol> app_protocol,
                           const TlsOptions& tls) {
  Future<void> waiter = loop.create_future<void>();
  auto conn =
      make_ssl_socket_transport(loop, fd, app_protocol, tls, waiter, std::move(server), peer);
  std::weak_ptr<SocketTransport> weak_below = conn.below;
  waiter.add_done_callback([&loop, weak_below, app_protocol](Future<void> f) {
    std::exception_ptr exc;
    if (f.cancelled())
      exc = std::make_exception_ptr(CancelledError());
    else
      exc = f.exception();
    if (!exc) return;  // it is now up to the protocol to handle the connection
    auto below = weak_below.lock();
    if (below) below->close();
    // A peer that fails its handshake (garbage, an unknown CA, silence) is its own
    // business: asyncio reports it only in debug mode, and the server keeps serving.
    if (loop.get_debug()) {
      ExceptionContext ctx;
      ctx.message = "Error on transport creation for incoming connection";
      ctx.exception = exc;
      ctx.protocol = app_protocol.get();
      ctx.transport = below.get();
      loop.call_exception_handler(ctx);
    }
  });
}

}  // namespace loop::detail

// EventLoop::start_tls: asyncio's loop.start_tls, the TLS layer slid under a live protocol.
#include <stdexcept>

#include "loop/loop.hpp"
#include "loop/sslproto.hpp"

namespace loop {

Coroutine<std::shared_ptr<Transport>> EventLoop::start_tls(
    std::shared_ptr<Transport> transport, std::shared_ptr<Protocol> protocol,
    std::shared_ptr<SSLContext> sslcontext, bool server_side,
    std::optional<std::string> server_hostname, std::optional<double> ssl_handshake_timeout) {
  check_closed();
  if (!transport) throw std::invalid_argument("start_tls needs a transport");
  if (!sslcontext) throw std::invalid_argument("sslcontext is expected to be an SSLContext");
  if (transport->is_closing()) throw std::runtime_error("Transport is closing");
  Future<void> waiter = create_future<void>();
  SSLProtocolOptions options;
  options.server_side = server_side;
  options.server_hostname = std::move(server_hostname);
  options.call_connection_made = false;  // the protocol is connected already
  options.ssl_handshake_timeout = ssl_handshake_timeout;
  auto ssl_protocol = SSLProtocol::make(*this, std::move(protocol), std::move(sslcontext), waiter,
                                        std::move(options));
  // asyncio's _start_tls_compatible check, after the options were checked (an invalid one
  // leaves the transport as it was); from here on the old transport refuses use.
  std::shared_ptr<Transport> below = transport->hand_over_to_tls();
  if (!below) throw std::invalid_argument("transport is not supported by start_tls()");
  // Pause first, so that the SSLProtocol reads nothing before its connection_made; from now
  // on every byte the transport reads is a TLS record for it.
  below->pause_reading();
  below->set_protocol(ssl_protocol);
  Handle conmade = call_soon([ssl_protocol, below] { ssl_protocol->connection_made(*below); });
  Handle resume = call_soon([below] { below->resume_reading(); });
  std::exception_ptr failed;
  try {
    co_await waiter;
  } catch (...) {
    failed = std::current_exception();
  }
  if (failed) {
    below->close();
    conmade.cancel();
    resume.cancel();
    std::rethrow_exception(failed);
  }
  co_return ssl_protocol->app_transport();
}

}  // namespace loop

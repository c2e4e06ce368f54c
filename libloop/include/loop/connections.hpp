// Streaming connections and servers: the template halves of EventLoop::create_connection,
// create_server and friends. The work is done by the untyped functions in loop::detail; the
// templates only keep the protocol's own type for the caller.
#pragma once

#include <concepts>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "loop/connection_options.hpp"
#include "loop/coroutine.hpp"
#include "loop/protocols.hpp"
#include "loop/server.hpp"
#include "loop/transports.hpp"

namespace loop {

namespace detail {

using ProtocolFactory = std::function<std::shared_ptr<Protocol>()>;

template <class F>
using factory_protocol_t = typename std::invoke_result_t<F&>::element_type;

template <class F>
concept StreamProtocolFactory = requires(F& f) {
  { f() } -> std::convertible_to<std::shared_ptr<Protocol>>;
};

Coroutine<std::shared_ptr<Transport>> create_connection(EventLoop& loop, ProtocolFactory factory,
                                                        std::string host, int port,
                                                        ConnectionOptions options);
Coroutine<std::shared_ptr<Transport>> create_unix_connection(EventLoop& loop,
                                                             ProtocolFactory factory,
                                                             std::string path,
                                                             ConnectionOptions options);
Coroutine<std::shared_ptr<Transport>> connect_accepted_socket(EventLoop& loop,
                                                              ProtocolFactory factory, int sock,
                                                              ConnectionOptions options);
Coroutine<std::shared_ptr<Server>> create_server(EventLoop& loop, ProtocolFactory factory,
                                                 std::vector<std::string> hosts, int port,
                                                 ServerOptions options);
Coroutine<std::shared_ptr<Server>> create_unix_server(EventLoop& loop, ProtocolFactory factory,
                                                      std::string path, ServerOptions options);

// Calls `make` with an untyped factory that remembers the typed protocol it returned.
template <class F, class Make>
auto with_typed_protocol(F factory, Make make) -> Coroutine<ConnectionPair<factory_protocol_t<F>>> {
  std::shared_ptr<factory_protocol_t<F>> protocol;
  std::shared_ptr<Transport> transport = co_await make([&]() -> std::shared_ptr<Protocol> {
    protocol = factory();
    return protocol;
  });
  co_return ConnectionPair<factory_protocol_t<F>>{std::move(transport), std::move(protocol)};
}

}  // namespace detail

template <class F>
auto EventLoop::create_connection(F protocol_factory, std::string host, int port,
                                  ConnectionOptions options)
    -> Coroutine<ConnectionPair<typename std::invoke_result_t<F&>::element_type>> {
  static_assert(detail::StreamProtocolFactory<F>,
                "protocol_factory must return shared_ptr<P>, P a Protocol");
  return detail::with_typed_protocol(
      std::move(protocol_factory), [this, host = std::move(host), port, options](auto f) mutable {
        return detail::create_connection(*this, std::move(f), std::move(host), port,
                                         std::move(options));
      });
}

template <class F>
auto EventLoop::create_connection(F protocol_factory, ConnectionOptions options)
    -> Coroutine<ConnectionPair<typename std::invoke_result_t<F&>::element_type>> {
  return create_connection(std::move(protocol_factory), std::string(), 0, std::move(options));
}

template <class F>
auto EventLoop::create_unix_connection(F protocol_factory, std::string path,
                                       ConnectionOptions options)
    -> Coroutine<ConnectionPair<typename std::invoke_result_t<F&>::element_type>> {
  static_assert(detail::StreamProtocolFactory<F>,
                "protocol_factory must return shared_ptr<P>, P a Protocol");
  return detail::with_typed_protocol(std::move(protocol_factory), [this, path = std::move(path),
                                                                   options](auto f) mutable {
    return detail::create_unix_connection(*this, std::move(f), std::move(path), std::move(options));
  });
}

template <class F>
auto EventLoop::connect_accepted_socket(F protocol_factory, int sock, ConnectionOptions options)
    -> Coroutine<ConnectionPair<typename std::invoke_result_t<F&>::element_type>> {
  static_assert(detail::StreamProtocolFactory<F>,
                "protocol_factory must return shared_ptr<P>, P a Protocol");
  return detail::with_typed_protocol(
      std::move(protocol_factory), [this, sock, options](auto f) mutable {
        return detail::connect_accepted_socket(*this, std::move(f), sock, std::move(options));
      });
}

template <class F>
Coroutine<std::shared_ptr<Server>> EventLoop::create_server(F protocol_factory,
                                                            std::vector<std::string> hosts,
                                                            int port, ServerOptions options) {
  static_assert(detail::StreamProtocolFactory<F>,
                "protocol_factory must return shared_ptr<P>, P a Protocol");
  return detail::create_server(*this, detail::ProtocolFactory(std::move(protocol_factory)),
                               std::move(hosts), port, std::move(options));
}

template <class F>
Coroutine<std::shared_ptr<Server>> EventLoop::create_server(F protocol_factory, std::string host,
                                                            int port, ServerOptions options) {
  std::vector<std::string> hosts;
  if (!host.empty()) hosts.push_back(std::move(host));
  return create_server(std::move(protocol_factory), std::move(hosts), port, std::move(options));
}

template <class F>
Coroutine<std::shared_ptr<Server>> EventLoop::create_server(F protocol_factory,
                                                            ServerOptions options) {
  static_assert(detail::StreamProtocolFactory<F>,
                "protocol_factory must return shared_ptr<P>, P a Protocol");
  return detail::create_server(*this, detail::ProtocolFactory(std::move(protocol_factory)), {}, -1,
                               std::move(options));
}

template <class F>
Coroutine<std::shared_ptr<Server>> EventLoop::create_unix_server(F protocol_factory,
                                                                 std::string path,
                                                                 ServerOptions options) {
  static_assert(detail::StreamProtocolFactory<F>,
                "protocol_factory must return shared_ptr<P>, P a Protocol");
  return detail::create_unix_server(*this, detail::ProtocolFactory(std::move(protocol_factory)),
                                    std::move(path), std::move(options));
}

}  // namespace loop

// EventLoop::create_datagram_endpoint: the typed front over the untyped implementation in
// libloop/src/transports/datagram_endpoint.cpp.
#pragma once

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

#include "loop/coroutine.hpp"
#include "loop/datagram.hpp"
#include "loop/transports.hpp"

namespace loop {

namespace detail {
using DatagramProtocolFactory = std::function<std::shared_ptr<DatagramProtocol>()>;
Coroutine<std::shared_ptr<DatagramTransport>> create_datagram_endpoint(
    EventLoop& loop, DatagramProtocolFactory protocol_factory, DatagramEndpointOptions options);
}  // namespace detail

template <class Factory>
Coroutine<std::pair<std::shared_ptr<DatagramTransport>, std::invoke_result_t<Factory&>>>
EventLoop::create_datagram_endpoint(Factory protocol_factory, DatagramEndpointOptions options) {
  using ProtocolPtr = std::invoke_result_t<Factory&>;
  static_assert(std::is_convertible_v<ProtocolPtr, std::shared_ptr<DatagramProtocol>>,
                "protocol_factory must return std::shared_ptr<P>, P a DatagramProtocol");
  ProtocolPtr protocol;
  auto transport = co_await detail::create_datagram_endpoint(
      *this,
      [&]() -> std::shared_ptr<DatagramProtocol> {
        protocol = protocol_factory();
        return protocol;
      },
      std::move(options));
  co_return std::make_pair(std::move(transport), std::move(protocol));
}

}  // namespace loop

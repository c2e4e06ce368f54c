// EventLoop::connect_read_pipe / connect_write_pipe: the typed front over
// libloop/src/transports/pipe_transport.cpp.
#pragma once

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

#include "loop/coroutine.hpp"
#include "loop/transports.hpp"

namespace loop {

namespace detail {
Coroutine<std::shared_ptr<ReadTransport>> connect_read_pipe(
    EventLoop& loop, std::function<std::shared_ptr<Protocol>()> protocol_factory, int fd);
Coroutine<std::shared_ptr<WriteTransport>> connect_write_pipe(
    EventLoop& loop, std::function<std::shared_ptr<BaseProtocol>()> protocol_factory, int fd);
}  // namespace detail

template <class Factory>
Coroutine<std::pair<std::shared_ptr<ReadTransport>, std::invoke_result_t<Factory&>>>
EventLoop::connect_read_pipe(Factory protocol_factory, int fd) {
  using ProtocolPtr = std::invoke_result_t<Factory&>;
  static_assert(std::is_convertible_v<ProtocolPtr, std::shared_ptr<Protocol>>,
                "protocol_factory must return std::shared_ptr<P>, P a Protocol");
  ProtocolPtr protocol;
  auto transport = co_await detail::connect_read_pipe(
      *this,
      [&]() -> std::shared_ptr<Protocol> {
        protocol = protocol_factory();
        return protocol;
      },
      fd);
  co_return std::make_pair(std::move(transport), std::move(protocol));
}

template <class Factory>
Coroutine<std::pair<std::shared_ptr<WriteTransport>, std::invoke_result_t<Factory&>>>
EventLoop::connect_write_pipe(Factory protocol_factory, int fd) {
  using ProtocolPtr = std::invoke_result_t<Factory&>;
  static_assert(std::is_convertible_v<ProtocolPtr, std::shared_ptr<BaseProtocol>>,
                "protocol_factory must return std::shared_ptr<P>, P a BaseProtocol");
  ProtocolPtr protocol;
  auto transport = co_await detail::connect_write_pipe(
      *this,
      [&]() -> std::shared_ptr<BaseProtocol> {
        protocol = protocol_factory();
        return protocol;
      },
      fd);
  co_return std::make_pair(std::move(transport), std::move(protocol));
}

}  // namespace loop

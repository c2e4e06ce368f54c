// The context dict asyncio passes to exception handlers, as a C++ struct.
#pragma once

#include <exception>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "loop/handle.hpp"

namespace loop {

namespace detail {
class FutureStateBase;
}
class BaseTransport;
class BaseProtocol;

/// What went wrong, for EventLoop::call_exception_handler. Only `message` is always present;
/// the rest are set when known (asyncio leaves the keys out).
struct ExceptionContext {
  std::string message;
  std::exception_ptr exception;
  std::shared_ptr<detail::FutureStateBase> future;  // the Future or Task concerned
  /// The pending Task the loop destroyed ("Task was destroyed but it is pending!": asyncio's
  /// Task.__del__ names it `task`, not `future`).
  std::shared_ptr<detail::FutureStateBase> task;
  /// The future's repr when the future itself cannot be carried (reported from its destructor).
  std::optional<std::string> future_repr;
  std::optional<Handle> handle;
  /// Valid during the handler's call only (asyncio's context holds references; these do not):
  /// a handler that keeps the context keeps the two descriptions below, not the objects.
  BaseProtocol* protocol = nullptr;
  BaseTransport* transport = nullptr;
  /// What describe_protocol/describe_transport said of them when the loop reported the context
  /// (to_json and format print these when set, so a kept context never reads the objects).
  std::optional<std::string> protocol_repr;
  std::optional<std::string> transport_repr;
  std::optional<int> socket;
  std::optional<std::string> asyncgen;          // the async generator's repr (shutdown_asyncgens)
  std::optional<std::string> source_traceback;  // where the handle was created (debug mode)
  std::shared_ptr<ExceptionContext> context;    // the original one, when a handler itself failed

  /// The keys present, as JSON: {"message": ..., "exception": {"type": ..., "what": ...}, ...}.
  nlohmann::json to_json() const;
  /// The multi-line text default_exception_handler logs.
  std::string format() const;
};

/// "std::runtime_error: boom" for an exception_ptr (empty string for null).
std::string describe_exception(const std::exception_ptr& e);
/// What asyncio's repr() says of them, as the exception context prints them:
/// "<EchoProtocol object at 0x...>", "<loop::detail::SocketTransport fd=7 peer=127.0.0.1:5000>".
std::string describe_protocol(const BaseProtocol& p);
std::string describe_transport(const BaseTransport& t);

}  // namespace loop

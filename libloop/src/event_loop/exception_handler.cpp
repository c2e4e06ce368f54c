// The exception handler API: call_exception_handler, default_exception_handler, and the
// context's rendering.
#include <cstdio>
#include <typeinfo>

#include "loop/event_loop.hpp"
#include "loop/future.hpp"
#include "loop/transports.hpp"

namespace loop {

std::string describe_exception(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return detail::demangle(typeid(ex).name()) + ": " + ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

// asyncio prints each object's repr; these say as much: the type, and for a transport its
// socket and peer.
std::string describe_protocol(const BaseProtocol& p) {
  char address[32];
  std::snprintf(address, sizeof address, "%p", static_cast<const void*>(&p));
  return "<" + detail::demangle(typeid(p).name()) + " object at " + address + ">";
}

std::string describe_transport(const BaseTransport& t) {
  std::string out = "<" + detail::demangle(typeid(t).name());
  try {
    if (auto fd = t.extra<int>("socket")) out += " fd=" + std::to_string(*fd);
    if (auto peer = t.extra<SocketAddress>("peername")) out += " peer=" + peer->to_string();
  } catch (...) {  // a transport that cannot say is still named
  }
  return out + (t.is_closing() ? " closing>" : ">");
}

namespace {
nlohmann::json exception_json(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return {{"type", detail::demangle(typeid(ex).name())}, {"what", ex.what()}};
  } catch (...) {
    return {{"type", "unknown"}, {"what", ""}};
  }
}
}  // namespace

nlohmann::json ExceptionContext::to_json() const {
  nlohmann::json j = {{"message", message}};
  if (exception) j["exception"] = exception_json(exception);
  if (future)
    j["future"] = future->repr();
  else if (future_repr)
    j["future"] = *future_repr;
  if (handle) j["handle"] = handle->repr();
  if (task) j["task"] = task->repr();
  if (protocol_repr)
    j["protocol"] = *protocol_repr;
  else if (protocol)
    j["protocol"] = describe_protocol(*protocol);
  if (transport_repr)
    j["transport"] = *transport_repr;
  else if (transport)
    j["transport"] = describe_transport(*transport);
  if (socket) j["socket"] = *socket;
  if (asyncgen) j["asyncgen"] = *asyncgen;
  if (source_traceback) j["source_traceback"] = *source_traceback;
  if (context) j["context"] = context->to_json();
  return j;
}

std::string ExceptionContext::format() const {
  // As asyncio's default_exception_handler: the message, then "key: value" for the others.
  std::string out = message.empty() ? "Unhandled exception in event loop" : message;
  nlohmann::json j = to_json();
  for (auto& [key, value] : j.items()) {
    if (key == "message" || key == "exception") continue;
    out += "\n" + key + ": " + (value.is_string() ? value.get<std::string>() : value.dump());
  }
  if (exception) out += "\n" + describe_exception(exception);
  return out;
}

void EventLoop::default_exception_handler(const ExceptionContext& context) {
  std::string text = context.format();
  std::fprintf(stderr, "loop: %s\n", text.c_str());
  std::fflush(stderr);
}

void EventLoop::call_exception_handler(const ExceptionContext& reported) noexcept {
  // The handler may keep the context past the objects it points to: it gets their
  // descriptions made now. Only when there are pointers to describe (a copy otherwise).
  std::optional<ExceptionContext> described;
  if ((reported.protocol && !reported.protocol_repr) ||
      (reported.transport && !reported.transport_repr)) {
    try {
      described.emplace(reported);
      if (described->protocol && !described->protocol_repr)
        described->protocol_repr = describe_protocol(*described->protocol);
      if (described->transport && !described->transport_repr)
        described->transport_repr = describe_transport(*described->transport);
    } catch (...) {
      described.reset();
    }
  }
  const ExceptionContext& context = described ? *described : reported;
  if (tracer()) {
    try {
      trace("exception", {{"context", context.to_json()}});
    } catch (...) {
    }
  }
  if (!exception_handler_) {
    try {
      default_exception_handler(context);
    } catch (...) {
      std::fputs("loop: Exception in default exception handler\n", stderr);
    }
    return;
  }
  try {
    exception_handler_(*this, context);
  } catch (...) {
    // The handler itself failed: report that, with the original context inside.
    try {
      ExceptionContext failed;
      failed.message = "Unhandled error in exception handler";
      failed.exception = std::current_exception();
      failed.context = std::make_shared<ExceptionContext>(context);
      default_exception_handler(failed);
    } catch (...) {
      std::fputs(
          "loop: Exception in default exception handler while handling an unexpected error in "
          "custom exception handler\n",
          stderr);
    }
  }
}

}  // namespace loop

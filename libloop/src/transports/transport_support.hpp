// Small pieces the datagram and pipe transports share: process-wide transport ids for the
// trace, the persistent ready-queue handle each transport re-schedules per I/O event, and
// errno -> exception.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <exception>
#include <string>
#include <system_error>

#include "loop/event_loop.hpp"

namespace loop::detail {

/// A small integer unique within the process (the trace's "transport" field).
inline std::uint64_t next_transport_id() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

/// An OSError-like exception: std::system_error carrying errno.
inline std::exception_ptr os_error(int err, const char* what) {
  return std::make_exception_ptr(std::system_error(err, std::generic_category(), what));
}

/// The "reason" of a trace record: null for a clean close, else the exception's text.
inline nlohmann::json trace_reason(const std::exception_ptr& e) {
  if (!e) return nullptr;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

/// One handle per transport and direction, allocated once and re-scheduled on the ready queue
/// each time asio reports readiness (no allocation per event). The owner clears `owner` in its
/// destructor, so a handle still queued after that does nothing.
template <class Owner>
class IoHandle final : public HandleImpl {
 public:
  IoHandle(Owner* owner, void (Owner::*fn)(), const char* name)
      : owner_(owner), fn_(fn), name_(name) {
    kind = HandleKind::io;
  }
  void invoke() override {
    queued = false;
    if (owner_) (owner_->*fn_)();
  }
  std::string callback_name() const override { return name_; }
  const char* constant_name() const noexcept override { return name_; }
  void detach() { owner_ = nullptr; }
  bool queued = false;

 private:
  Owner* owner_;
  void (Owner::*fn_)();
  const char* name_;
};

/// Puts `h` on the loop's ready queue unless it is already there.
template <class Owner>
void schedule_once(EventLoop& loop, IoHandle<Owner>* h, const char* what) {
  if (h->queued) return;
  h->queued = true;
  loop.schedule(HandleRef(h), what);
}

}  // namespace loop::detail

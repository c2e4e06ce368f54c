// The protocol a transport calls into. asyncio lets a protocol call transport.set_protocol()
// from inside any of its own callbacks; the protocol replaced is then still running. Every
// transport holds its protocol in a ProtocolSlot and calls it through call(): the slot counts
// the calls in progress, and set() parks a protocol replaced meanwhile until the outermost
// call has returned. So no call takes a reference to the protocol (no atomic increment per
// read, per TLS record or per datagram), and none is destroyed while it runs.
//
// The rule that makes it safe: whoever calls through a slot keeps the slot's owner (the
// transport) alive until the call returns, as the transports' I/O handles and scheduled
// callbacks do (self_, or a shared_ptr captured for the call).
#pragma once

#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

namespace loop::detail {

template <class P>
class ProtocolSlot {
 public:
  ProtocolSlot() = default;
  explicit ProtocolSlot(std::shared_ptr<P> protocol) : current_(std::move(protocol)) {}
  ProtocolSlot(const ProtocolSlot&) = delete;
  ProtocolSlot& operator=(const ProtocolSlot&) = delete;

  P* get() const noexcept { return current_.get(); }
  const std::shared_ptr<P>& shared() const noexcept { return current_; }
  explicit operator bool() const noexcept { return current_ != nullptr; }

  /// set_protocol(). The protocol replaced is released now, or when the outermost call in
  /// progress returns.
  void set(std::shared_ptr<P> protocol) {
    // The old one is released last, when the slot already holds the new one.
    std::shared_ptr<P> old = std::exchange(current_, std::move(protocol));
    if (calls_ > 0 && old) [[unlikely]]
      parked_.push_back(std::move(old));
  }
  /// Drops the protocol (after connection_lost), with the same care as set().
  void reset() { set(nullptr); }
  /// Hands the protocol over (loop_destroyed): the caller decides when it is released, but
  /// not before a call in progress returns.
  std::shared_ptr<P> take() {
    if (calls_ > 0 && current_) [[unlikely]]
      parked_.push_back(current_);
    return std::exchange(current_, nullptr);
  }

  /// A scope in which whatever protocol the slot held, or will hold, stays alive: for a
  /// sequence of calls into it (get_buffer(), recv, buffer_updated()).
  class Call {
   public:
    explicit Call(ProtocolSlot& slot) noexcept : slot_(slot) { ++slot_.calls_; }
    ~Call() {
      if (--slot_.calls_ == 0 && !slot_.parked_.empty()) [[unlikely]]
        slot_.release_parked();
    }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

   private:
    ProtocolSlot& slot_;
  };

  /// Runs f(protocol) inside a Call. With no protocol (set_protocol(nullptr)) it throws, as
  /// asyncio's call on None raises AttributeError.
  template <class F>
  decltype(auto) call(F&& f) {
    Call scope(*this);
    if (!current_) throw std::runtime_error("the transport has no protocol");
    return std::forward<F>(f)(*current_);
  }
  /// As call(), but with no protocol it does nothing.
  template <class F>
  void call_if_set(F&& f) {
    Call scope(*this);
    if (current_) std::forward<F>(f)(*current_);
  }

 private:
  // Out of line, so that a Call costs a decrement and a compare.
  [[gnu::noinline]] void release_parked() noexcept {
    // Released after the slot's last use: a parked protocol may hold the last reference to
    // the transport that owns the slot.
    auto parked = std::move(parked_);
  }

  std::shared_ptr<P> current_;
  std::vector<std::shared_ptr<P>> parked_;
  unsigned calls_ = 0;
};

}  // namespace loop::detail

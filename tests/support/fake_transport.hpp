// An in-memory pair of connected stream transports for protocol-layer tests: a write on one
// side is delivered to the other side's protocol (data_received) by loop.call_soon, close()
// delivers EOF after the data written before it, abort() resets the peer. Flow control
// follows asyncio's: pause_writing above the high-water mark (bytes written, not yet
// delivered), resume_writing at or below the low one.
#pragma once

#include <cerrno>
#include <loop/loop.hpp>
#include <loop/transports.hpp>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

namespace loop::test {

class FakeTransport : public Transport, public std::enable_shared_from_this<FakeTransport> {
 public:
  FakeTransport(EventLoop& lp, std::string name) : lp_(lp), name_(std::move(name)) {}

  /// Two connected transports, "a" and "b".
  static std::pair<std::shared_ptr<FakeTransport>, std::shared_ptr<FakeTransport>> make_pair(
      EventLoop& lp) {
    auto a = std::make_shared<FakeTransport>(lp, "a");
    auto b = std::make_shared<FakeTransport>(lp, "b");
    a->peer_ = b;
    b->peer_ = a;
    return {a, b};
  }

  /// Attaches the protocol and schedules its connection_made.
  void start(std::shared_ptr<BaseProtocol> protocol) {
    protocol_ = std::move(protocol);
    auto self = shared_from_this();
    lp_.call_soon([self] {
      if (self->protocol_ && !self->lost_) self->protocol_->connection_made(*self);
    });
  }

  // ---- Transport -------------------------------------------------------------------------
  std::any get_extra_info(std::string_view name, std::any default_value = {}) const override {
    if (name == "peername") return std::string("fake-peer-of-" + name_);
    if (name == "sockname") return std::string("fake-" + name_);
    return default_value;
  }
  bool is_closing() const override { return closing_; }
  void close() override {
    if (closing_) return;
    closing_ = true;
    auto self = shared_from_this();
    // FIFO: the EOF reaches the peer after every write made before close().
    lp_.call_soon([self] {
      if (auto peer = self->peer_.lock()) peer->deliver_eof();
      self->lose(nullptr);
    });
  }
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
    protocol_ = std::move(protocol);
  }
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }

  bool is_reading() const override { return reading_ && !closing_; }
  void pause_reading() override { reading_ = false; }
  void resume_reading() override {
    if (reading_) return;
    reading_ = true;
    if (!held_.empty()) {
      auto self = shared_from_this();
      lp_.call_soon([self] {
        std::string held = std::exchange(self->held_, {});
        if (!held.empty()) self->deliver(held);
      });
    }
  }

  void write(std::string_view data) override {
    if (closing_ || data.empty()) return;
    wire_bytes += data.size();
    if (record_wire) wire += data;
    buffered_ += data.size();
    ++writes;
    if (!protocol_paused_ && buffered_ > high_) {
      protocol_paused_ = true;
      ++pause_count;
      if (protocol_) protocol_->pause_writing();
    }
    auto self = shared_from_this();
    lp_.call_soon([self, chunk = std::string(data)] {
      self->buffered_ -= chunk.size();
      if (auto peer = self->peer_.lock()) peer->deliver(chunk);
      if (self->protocol_paused_ && self->buffered_ <= self->low_ && !self->lost_) {
        self->protocol_paused_ = false;
        if (self->protocol_) self->protocol_->resume_writing();
      }
    });
  }
  void write_eof() override {}
  bool can_write_eof() const override { return true; }
  void abort() override {
    if (lost_) return;
    closing_ = true;
    ++aborts;
    auto self = shared_from_this();
    lp_.call_soon([self] {
      if (auto peer = self->peer_.lock())
        peer->lose(std::make_exception_ptr(
            std::system_error(ECONNRESET, std::generic_category(), "Connection reset by peer")));
      self->lose(nullptr);
    });
  }
  std::size_t get_write_buffer_size() const override { return buffered_; }
  void set_write_buffer_limits(std::optional<std::size_t> high,
                               std::optional<std::size_t> low) override {
    high_ = high.value_or(low ? 4 * *low : 64 * 1024);
    low_ = low.value_or(high_ / 4);
  }
  std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
    return {low_, high_};
  }

  /// Hands bytes to this side's protocol as if they came from the peer (now).
  void deliver(const std::string& data) {
    if (lost_ || !protocol_) return;
    if (!reading_) {
      held_ += data;
      return;
    }
    if (auto p = std::dynamic_pointer_cast<Protocol>(protocol_)) p->data_received(data);
  }
  void deliver_eof() {
    if (lost_ || !protocol_) return;
    auto p = std::dynamic_pointer_cast<Protocol>(protocol_);
    ++eofs_received;
    if (!p || !p->eof_received()) close();
  }
  void lose(std::exception_ptr exc) {
    if (lost_) return;
    lost_ = true;
    closing_ = true;
    if (protocol_) protocol_->connection_lost(exc);
  }

  bool lost() const { return lost_; }

  // What the tests look at.
  std::size_t wire_bytes = 0;  // everything written
  bool record_wire = false;    // keep a copy of the bytes written in `wire`
  std::string wire;
  int writes = 0, aborts = 0, pause_count = 0, eofs_received = 0;

 private:
  EventLoop& lp_;
  std::string name_;
  std::weak_ptr<FakeTransport> peer_;
  std::shared_ptr<BaseProtocol> protocol_;
  bool closing_ = false;
  bool lost_ = false;
  bool reading_ = true;
  bool protocol_paused_ = false;
  std::string held_;  // received while reading was paused
  std::size_t buffered_ = 0;
  std::size_t high_ = 64 * 1024, low_ = 16 * 1024;
};

}  // namespace loop::test

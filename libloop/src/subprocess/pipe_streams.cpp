// PipeReader and PipeWriter: asyncio.StreamReader's read side and StreamWriter's drain
// (FlowControlMixin), for a child's pipes.
#include <cerrno>
#include <system_error>

#include "loop/loop.hpp"

namespace loop {

// ---- PipeReader ----------------------------------------------------------------------------

PipeReader::PipeReader(EventLoop& loop, std::size_t limit) : loop_(loop), limit_(limit) {
  if (limit == 0) throw std::invalid_argument("Limit cannot be <= 0");
}

void PipeReader::wakeup_waiter() {
  if (waiter_ && !waiter_->done()) waiter_->set_result();
}

void PipeReader::feed_data(std::string_view data) {
  if (data.empty()) return;
  buffer_.append(data);
  wakeup_waiter();
  // Too much unread: stop reading the pipe until the consumer catches up.
  if (transport_ && !paused_ && buffer_.size() > 2 * limit_) {
    transport_->pause_reading();
    paused_ = true;
  }
}

void PipeReader::feed_eof() {
  eof_ = true;
  wakeup_waiter();
}

void PipeReader::set_exception(std::exception_ptr exc) {
  exception_ = exc;
  if (waiter_ && !waiter_->done()) waiter_->set_exception(exc);
}

void PipeReader::maybe_resume_transport() {
  if (paused_ && buffer_.size() <= limit_) {
    paused_ = false;
    if (transport_) transport_->resume_reading();
  }
}

Coroutine<void> PipeReader::wait_for_data(const char* func) {
  if (waiter_)
    throw std::runtime_error(std::string(func) +
                             "() called while another coroutine is already waiting for data");
  // A paused transport with an empty enough buffer would never wake us: resume it.
  if (paused_) {
    paused_ = false;
    if (transport_) transport_->resume_reading();
  }
  auto self = shared_from_this();
  waiter_ = loop_.create_future<void>();
  Future<void> w = *waiter_;
  std::exception_ptr err;
  try {
    co_await w;
  } catch (...) {
    err = std::current_exception();
  }
  waiter_.reset();
  if (err) std::rethrow_exception(err);
}

Coroutine<std::string> PipeReader::read(std::ptrdiff_t n) {
  auto self = shared_from_this();
  if (exception_) std::rethrow_exception(exception_);
  if (n == 0) co_return std::string();
  if (n < 0) {
    // Everything until EOF, a limit-sized block at a time (so flow control keeps working).
    std::string all;
    for (;;) {
      std::string block = co_await read(static_cast<std::ptrdiff_t>(limit_));
      if (block.empty()) break;
      all += block;
    }
    co_return all;
  }
  if (buffer_.empty() && !eof_) co_await wait_for_data("read");
  std::size_t take = std::min(buffer_.size(), static_cast<std::size_t>(n));
  std::string data = buffer_.substr(0, take);
  buffer_.erase(0, take);
  maybe_resume_transport();
  co_return data;
}

Coroutine<std::string> PipeReader::readline() {
  auto self = shared_from_this();
  for (;;) {
    if (exception_) std::rethrow_exception(exception_);
    auto nl = buffer_.find('\n');
    if (nl != std::string::npos || eof_) {
      std::size_t take = nl == std::string::npos ? buffer_.size() : nl + 1;
      std::string line = buffer_.substr(0, take);
      buffer_.erase(0, take);
      maybe_resume_transport();
      co_return line;
    }
    co_await wait_for_data("readline");
  }
}

// ---- PipeWriter ----------------------------------------------------------------------------

Coroutine<void> PipeWriter::drain() {
  // A closing transport: give connection_lost a chance to run first (asyncio's sleep(0)).
  if (transport_->is_closing()) co_await sleep(0);
  if (connection_lost_)
    throw std::system_error(ECONNRESET, std::generic_category(), "Connection lost");
  if (!paused_) co_return;
  auto w = loop_.create_future<void>();
  drain_waiters_.push_back(w);
  co_await w;
}

void PipeWriter::resume_writing() {
  paused_ = false;
  auto waiters = std::move(drain_waiters_);
  drain_waiters_.clear();
  for (auto& w : waiters)
    if (!w.done()) w.set_result();
}

void PipeWriter::connection_lost(std::exception_ptr exc) {
  connection_lost_ = true;
  if (!paused_) return;
  auto waiters = std::move(drain_waiters_);
  drain_waiters_.clear();
  for (auto& w : waiters) {
    if (w.done()) continue;
    if (exc)
      w.set_exception(exc);
    else
      w.set_result();
  }
}

}  // namespace loop

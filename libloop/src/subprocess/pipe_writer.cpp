// PipeWriter: asyncio.StreamWriter's write side and drain (FlowControlMixin) for a child's
// stdin pipe.
#include <cerrno>
#include <system_error>

#include "loop/loop.hpp"

namespace loop {

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

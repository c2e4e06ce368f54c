// Async generators and the loop's registry of them: asyncio's firstiter hook and
// shutdown_asyncgens().
#include "loop/asyncgen.hpp"

#include <cstdio>
#include <mutex>

#include "loop/task.hpp"

namespace loop {

namespace detail {

AsyncGenStateBase::~AsyncGenStateBase() {
  if (!link_) return;
  // Under the link's lock: the last owner may be on another thread than the loop's.
  std::lock_guard<std::mutex> lock(link_->mutex);
  if (link_->loop) link_->loop->unregister_asyncgen(this);
}

std::string AsyncGenStateBase::repr() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "<async_generator object at %p>", static_cast<const void*>(this));
  return buf;
}

void AsyncGenStateBase::first_iter(TaskStateBase* task) {
  if (loop_) return;
  EventLoop* loop = task ? &task->loop() : running_loop();
  if (!loop) return;  // iterated outside any loop: nothing to register with
  loop_ = loop;
  link_ = loop->link();
  loop->register_asyncgen(this);
}

namespace {
// The task that closes a dropped generator owns it from its creation on.
Coroutine<void> close_dropped(std::shared_ptr<AsyncGenStateBase> gen) {
  co_await gen->aclose();
}
}  // namespace

void AsyncGenStateBase::finalize() noexcept {
  if (!link_ || !open()) {
    delete this;
    return;
  }
  // asyncio's _asyncgen_finalizer_hook: _asyncgens.discard(agen), then, unless the loop is
  // closed, call_soon_threadsafe(create_task, agen.aclose()), whose task reports what the
  // cleanup raises as any task's unretrieved exception. The drop may happen on any thread.
  {
    std::lock_guard<std::mutex> lock(link_->mutex);
    if (link_->loop) link_->loop->unregister_asyncgen(this);  // not closed again by shutdown
  }
  // Owned again only now: shutdown_asyncgens() reads this weak_this under the registry's lock.
  std::shared_ptr<AsyncGenStateBase> self(this);
  auto h =
      make_handle(named("create_task", [self] { self->loop_->create_task(close_dropped(self)); }));
  h->context = capture_context();
  // False if the loop is closed or gone: then `self` destroys it on return, as before.
  link_->post(std::move(h));
}

}  // namespace detail

void EventLoop::register_asyncgen(detail::AsyncGenStateBase* gen) {
  if (asyncgens_shutdown_called_)
    std::fprintf(stderr,
                 "loop: asynchronous generator %s was scheduled after "
                 "loop.shutdown_asyncgens() call\n",
                 gen->repr().c_str());
  std::lock_guard<std::mutex> lock(asyncgens_mutex_);
  asyncgens_.push_back(gen);
}

void EventLoop::unregister_asyncgen(detail::AsyncGenStateBase* gen) {
  std::lock_guard<std::mutex> lock(asyncgens_mutex_);
  std::erase(asyncgens_, gen);
}

Coroutine<void> EventLoop::shutdown_asyncgens() {
  asyncgens_shutdown_called_ = true;
  // Keep every generator alive while it closes, even if its owner lets go meanwhile.
  std::vector<std::shared_ptr<detail::AsyncGenStateBase>> closing;
  {
    // One whose last owner is letting go on another thread is left to its finalizer (it
    // unregisters it under this lock, and only then owns it again).
    std::lock_guard<std::mutex> lock(asyncgens_mutex_);
    for (auto* gen : asyncgens_)
      if (auto owned = gen->weak_from_this().lock()) closing.push_back(std::move(owned));
    asyncgens_.clear();
  }
  if (closing.empty()) co_return;
  // All at once, as asyncio's gather(*[ag.aclose() ...], return_exceptions=True): every
  // closer finishes first, then the errors are reported in order.
  std::vector<Task<void>> closers;
  for (auto& gen : closing) closers.push_back(create_task(gen->aclose()));
  auto all_closed = create_future<void>();
  auto remaining = std::make_shared<std::size_t>(closers.size());
  for (auto& closer : closers) {
    closer.add_done_callback([all_closed, remaining](Future<void> f) {
      if (!f.cancelled()) (void)f.exception();  // retrieved, as gather's callback does
      if (--*remaining == 0 && !all_closed.done()) all_closed.set_result();
    });
  }
  try {
    co_await all_closed;
  } catch (const CancelledError&) {
    for (auto& closer : closers) closer.cancel();  // as cancelling gather's future does
    throw;
  }
  for (std::size_t i = 0; i < closers.size(); ++i) {
    // asyncio reports only Exception subclasses; CancelledError is a BaseException.
    if (closers[i].cancelled()) continue;
    if (auto error = closers[i].exception()) {
      ExceptionContext ctx;
      ctx.message =
          "an error occurred during closing of asynchronous generator " + closing[i]->repr();
      ctx.exception = error;
      ctx.asyncgen = closing[i]->repr();
      call_exception_handler(ctx);
    }
  }
}

}  // namespace loop

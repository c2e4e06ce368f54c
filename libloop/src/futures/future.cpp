// FutureStateBase: asyncio.Future's state machine, shared by every Future<T> and Task<T>.
#include "loop/future.hpp"

#include "loop/coroutine.hpp"

namespace loop::detail {

namespace {
// The handle a done-callback runs in; named after the future for reports and traces.
class DoneCallbackHandle final : public HandleImpl {
 public:
  DoneCallbackHandle(std::shared_ptr<FutureStateBase> fut, FutureStateBase::Callback fn)
      : fut_(std::move(fut)), fn_(std::move(fn)) {
    kind = HandleKind::future;
  }
  void invoke() override { fn_(); }
  std::string callback_name() const override { return constant_name(); }
  const char* constant_name() const noexcept override {
    return fut_->is_task() ? "Task.__wakeup" : "Future.done_callback";
  }

 private:
  std::shared_ptr<FutureStateBase> fut_;  // keeps the future alive until the callback ran
  FutureStateBase::Callback fn_;
};

// Task.__wakeup as a done-callback: steps the task if it still exists. It does not hold the
// future: the task does (fut_waiter_) until the step, and once the task is gone nobody needs it.
class TaskWakeupHandle final : public HandleImpl {
 public:
  TaskWakeupHandle(std::weak_ptr<FutureStateBase> task_future, TaskStateBase* task)
      : task_future_(std::move(task_future)), task_(task) {
    kind = HandleKind::future;
  }
  /// On the ready queue. A task awaits one future at a time, so its handle is queued once at
  /// most; it stays marked only if a closing loop dropped it unrun (schedule_done_callback then
  /// queues a copy).
  bool queued = false;
  void invoke() override {
    queued = false;
    if (auto alive = task_future_.lock()) task_->wakeup();
  }
  std::string callback_name() const override { return constant_name(); }
  const char* constant_name() const noexcept override { return "Task.__wakeup"; }
  HandleRef copy() const {
    return HandleRef(new TaskWakeupHandle(task_future_, task_), HandleRef::Adopt{});
  }

 private:
  std::weak_ptr<FutureStateBase> task_future_;
  TaskStateBase* task_;
};
}  // namespace

HandleRef make_task_wakeup_handle(std::weak_ptr<FutureStateBase> task_future, TaskStateBase* task) {
  return HandleRef(new TaskWakeupHandle(std::move(task_future), task), HandleRef::Adopt{});
}

FutureStateBase::~FutureStateBase() {
  if (!is_task_)
    report_unretrieved(
        [this] { return std::string("<Future ") + status_word() + outcome_repr() + ">"; });
}

void FutureStateBase::call_unretrieved_handler(const std::string& repr_text) noexcept {
  try {
    ExceptionContext ctx;
    ctx.message = std::string(is_task_ ? "Task" : "Future") + " exception was never retrieved";
    ctx.exception = exception_;
    // The state is being destroyed: the context carries its description, not the future.
    ctx.future_repr = repr_text;
    if (origin_) ctx.source_traceback = origin_->describe();
    loop_->call_exception_handler(ctx);
  } catch (...) {
  }
}

void FutureStateBase::assert_pending(const char* what) const {
  if (status_ != FutureStatus::pending)
    throw InvalidStateError(std::string("invalid state: ") + what + " on a done future");
}

bool FutureStateBase::cancel(std::string msg) {
  silence_unretrieved();
  if (status_ != FutureStatus::pending) return false;
  status_ = FutureStatus::cancelled;
  cancel_message_ = std::move(msg);
  schedule_callbacks();
  return true;
}

void FutureStateBase::set_exception(std::exception_ptr e) {
  assert_pending("set_exception");
  if (!e) throw std::invalid_argument("set_exception needs an exception");
  // A CancelledError is stored like any exception, as asyncio's Future does: the future is
  // finished, not cancelled (gather's outer future when a child was cancelled); a task that
  // awaits it gets the CancelledError and ends cancelled.
  exception_ = std::move(e);
  mark_finished();
}

void FutureStateBase::check_loop_open() const {
  // A future may outlive its loop (a destroyed loop is a closed one, and its memory is gone).
  if (!link_->alive.load(std::memory_order_acquire))
    throw std::runtime_error("Event loop is closed");
  loop_->check_closed();
}

void FutureStateBase::mark_finished() {
  status_ = FutureStatus::finished;
  schedule_callbacks();
}

std::exception_ptr FutureStateBase::exception() {
  if (status_ == FutureStatus::cancelled) throw CancelledError(cancel_message_);
  if (status_ != FutureStatus::finished) throw InvalidStateError("Exception is not set.");
  exception_retrieved_ = true;
  return exception_;
}

void FutureStateBase::check_result() {
  if (status_ == FutureStatus::cancelled) throw CancelledError(cancel_message_);
  if (status_ != FutureStatus::finished)
    throw InvalidStateError("Result is not set.");  // the C Future's words
  exception_retrieved_ = true;
  if (exception_) std::rethrow_exception(exception_);
}

std::uint64_t FutureStateBase::add_done_callback(Callback cb, ContextRef ctx) {
  std::uint64_t id = next_callback_id_++;
  add_callback({id, std::move(cb), {}, std::move(ctx)});
  return id;
}

void FutureStateBase::add_task_wakeup(HandleRef wakeup, ContextRef ctx) {
  DoneCallback* slot = status_ == FutureStatus::pending ? free_inline_slot() : nullptr;
  if (slot) {
    // The usual case, a task awaiting a pending future: filled in place, not moved in.
    slot->id = next_callback_id_++;
    slot->task_wakeup = std::move(wakeup);
    slot->ctx = std::move(ctx);
    return;
  }
  add_callback({next_callback_id_++, {}, std::move(wakeup), std::move(ctx)});
}

void FutureStateBase::add_callback(DoneCallback c) {
  if (status_ != FutureStatus::pending) {
    check_loop_open();  // asyncio's call_soon raises on a closed loop
    schedule_done_callback(c, "add_done_callback");
  } else if (DoneCallback* slot = free_inline_slot()) {
    *slot = std::move(c);
  } else {
    more_callbacks_.push_back(std::move(c));
  }
}

void FutureStateBase::schedule_done_callback(DoneCallback& c, const char* why) {
  HandleRef h;
  if (c.task_wakeup) {
    auto* wakeup = static_cast<TaskWakeupHandle*>(c.task_wakeup.get());
    if (wakeup->queued)
      h = wakeup->copy();  // left queued by a closing loop (see TaskWakeupHandle::queued)
    else
      h = std::move(c.task_wakeup);
    static_cast<TaskWakeupHandle*>(h.get())->queued = true;
  } else {
    h = HandleRef(new DoneCallbackHandle(shared_from_this(), std::move(c.fn)), HandleRef::Adopt{});
  }
  h->context = std::move(c.ctx);
  loop_->schedule(std::move(h), why);
}

void FutureStateBase::schedule_and_clear(DoneCallback& c) {
  schedule_done_callback(c, "schedule_callbacks");
  c.id = 0;
  c.fn = nullptr;  // moved from already; said for any standard library
  c.task_wakeup = HandleRef();
}

std::size_t FutureStateBase::remove_done_callback(std::uint64_t id) {
  if (id && first_callback_.id == id) {
    first_callback_ = {};
    return 1;
  }
  if (id && second_callback_.id == id) {
    second_callback_ = {};
    return 1;
  }
  return std::erase_if(more_callbacks_, [id](const DoneCallback& c) { return c.id == id; });
}

bool FutureStateBase::reset_to_pending() {
  if (status_ != FutureStatus::finished || exception_ || !no_callbacks()) return false;
  status_ = FutureStatus::pending;
  exception_retrieved_ = false;
  return true;
}

void FutureStateBase::drop_callbacks() noexcept {
  first_callback_ = {};
  second_callback_ = {};
  more_callbacks_.clear();
}

void FutureStateBase::schedule_callbacks() {
  if (no_callbacks()) return;
  // asyncio's call_soon raises on a closed loop; the state has changed already, as there.
  check_loop_open();
  // Scheduling runs no callback, so nothing can add to this future meanwhile: the inline
  // entries are scheduled where they are (their parts are moved into the handles).
  if (first_callback_.id) schedule_and_clear(first_callback_);
  if (second_callback_.id) schedule_and_clear(second_callback_);
  if (more_callbacks_.empty()) return;
  auto more = std::move(more_callbacks_);
  more_callbacks_.clear();
  for (auto& c : more) schedule_done_callback(c, "schedule_callbacks");
}

std::string repr_value(const std::string& v) {
  std::string out = "'";
  for (char c : v.substr(0, 40)) out += (c == '\'' ? std::string("\\'") : std::string(1, c));
  if (v.size() > 40) out += "...";
  return out + "'";
}

const char* FutureStateBase::status_word() const {
  switch (status_) {
    case FutureStatus::pending:
      return "pending";
    case FutureStatus::cancelled:
      return "cancelled";
    case FutureStatus::finished:
      return "finished";
  }
  return "?";
}

std::string FutureStateBase::outcome_repr() const {
  if (status_ != FutureStatus::finished) return {};
  if (exception_) return " exception=" + describe_exception(exception_);
  std::string r = result_repr();
  return r.empty() ? std::string() : " result=" + r;
}

std::string FutureStateBase::repr() const {
  return std::string("<Future ") + status_word() + outcome_repr() + ">";
}

}  // namespace loop::detail

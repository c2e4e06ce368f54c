// TaskStateBase: asyncio.Task's __step, __wakeup and cancel, for coroutines.
#include "loop/task.hpp"

#include <atomic>

namespace loop {

namespace detail {

namespace {

thread_local TaskStateBase* t_current_task = nullptr;
std::atomic<std::uint64_t> g_task_counter{0};

// The handle a task step runs in: "Task.__step(name)" in reports and traces.
class TaskStepHandle final : public HandleImpl {
 public:
  explicit TaskStepHandle(std::weak_ptr<TaskStateBase> task, const char* what)
      : task_(std::move(task)), what_(what) {
    kind = HandleKind::task;
  }
  void invoke() override { fn(); }
  std::string callback_name() const override {
    auto t = task_.lock();
    return std::string(what_) + "(" + (t ? t->name() : std::string("?")) + ")";
  }
  std::function<void()> fn;

 private:
  std::weak_ptr<TaskStateBase> task_;
  const char* what_;
};

}  // namespace

std::string next_task_name() {
  return "Task-" + std::to_string(++g_task_counter);
}

TaskStateBase* current_task_state() noexcept {
  return t_current_task;
}

void TaskStateBase::schedule_first_step() {
  auto self = shared();
  loop().register_task(self);
  auto* h = new TaskStepHandle(self, "Task.__step");
  HandleRef ref(h);
  h->fn = [weak = std::weak_ptr<TaskStateBase>(self)] {
    if (auto t = weak.lock()) t->step();
  };
  h->context = context_;
  loop().schedule(std::move(ref), "create_task");
}

void TaskStateBase::suspend_on(FutureStateBase& fut, std::coroutine_handle<> h) {
  const char* refused = &fut == &as_future()     ? "Task cannot await on itself"
                        : &fut.loop() != &loop() ? "Task got Future attached to a different loop"
                                                 : nullptr;
  if (refused) {
    // asyncio's __step does not raise at the await: it queues the next step with the error
    // (call_soon(__step, RuntimeError(...))), behind the callbacks already queued.
    pending_exception_ = std::make_exception_ptr(std::runtime_error(refused));
    suspend_yield(h);
    return;
  }
  resume_point_ = h;
  fut_waiter_ = fut.shared_from_this();
  if (!wakeup_handle_) wakeup_handle_ = make_task_wakeup_handle(as_future().weak_from_this(), this);
  fut.add_task_wakeup(wakeup_handle_, context_);
  if (must_cancel_) {
    // cancel() was called while this step ran: pass it on to what we now wait for.
    if (fut_waiter_->cancel(must_cancel_msg_)) must_cancel_ = false;
  }
}

void TaskStateBase::suspend_yield(std::coroutine_handle<> h) {
  resume_point_ = h;
  auto self = shared();
  auto* step = new TaskStepHandle(self, "Task.__step");
  HandleRef ref(step);
  step->fn = [weak = std::weak_ptr<TaskStateBase>(self)] {
    if (auto t = weak.lock()) t->step();
  };
  step->context = context_;
  loop().schedule(std::move(ref), "sleep(0)");
}

void TaskStateBase::throw_if_pending() {
  if (auto e = std::exchange(pending_exception_, nullptr)) std::rethrow_exception(e);
}

bool TaskStateBase::task_cancel(std::string msg) {
  FutureStateBase& fut = as_future();
  fut.silence_unretrieved();  // before the done() check, as asyncio's Task.cancel
  if (fut.done()) return false;
  if (fut_waiter_ && fut_waiter_->cancel(msg)) {
    // The waiter's done-callback wakes us with CancelledError. Keep fut_waiter_: it may be a
    // task that swallows the cancellation, to be cancelled again later.
    return true;
  }
  // A step is already scheduled: it throws CancelledError into the coroutine.
  must_cancel_ = true;
  must_cancel_msg_ = std::move(msg);
  return true;
}

void TaskStateBase::step() {
  if (as_future().done()) return;
  auto keep_alive = shared();  // the coroutine may drop the last outside reference
  if (must_cancel_) {
    pending_exception_ = std::make_exception_ptr(CancelledError(must_cancel_msg_));
    must_cancel_ = false;
  }
  fut_waiter_.reset();
  if (!started_ && pending_exception_) {
    // Cancelled before it ever ran: the coroutine body never starts (as a coroutine thrown
    // into before its first send).
    on_coroutine_done(std::exchange(pending_exception_, nullptr));
    loop().unregister_task(this);
    return;
  }
  started_ = true;
  TaskStateBase* previous = std::exchange(t_current_task, this);
  resume_point_.resume();
  t_current_task = previous;
  if (frame_done()) {
    on_coroutine_done(nullptr);
    loop().unregister_task(this);
  }
}

// sleep() with a timer; sleep(0) yields one iteration, as asyncio's __sleep0.
}  // namespace detail

Coroutine<void> sleep(double delay) {
  if (delay <= 0) {
    co_await detail::YieldAwaiter{};
    co_return;
  }
  EventLoop& loop = get_running_loop();
  auto fut = loop.create_future<void>();
  TimerHandle h = loop.call_later(delay, [fut] {
    if (!fut.done()) fut.set_result();
  });
  std::exception_ptr cancelled;
  try {
    co_await fut;
  } catch (const CancelledError&) {
    cancelled = std::current_exception();  // with the message cancel() gave
  }
  h.cancel();
  if (cancelled) std::rethrow_exception(cancelled);
}

namespace detail {
Coroutine<void> cancel_and_wait(std::shared_ptr<FutureStateBase> fut) {
  EventLoop& loop = fut->loop();
  auto waiter = loop.create_future<void>();
  std::uint64_t id = fut->add_done_callback(
      [waiter] {
        if (!waiter.done()) waiter.set_result();
      },
      capture_context());
  fut->cancel();
  // Whatever happens to us, wait for the cancelled future to finish.
  std::exception_ptr error;
  try {
    co_await waiter;
  } catch (...) {
    error = std::current_exception();
  }
  fut->remove_done_callback(id);
  if (error) std::rethrow_exception(error);
}
}  // namespace detail

TaskBase current_task() {
  auto* t = detail::current_task_state();
  return t ? TaskBase(t->shared()) : TaskBase();
}

std::vector<TaskBase> all_tasks(EventLoop& loop) {
  std::vector<TaskBase> out;
  // The loop keeps every pending task; ask it through its registry.
  loop.for_each_task([&](const std::shared_ptr<detail::TaskStateBase>& t) {
    if (!t->as_future().done()) out.emplace_back(t);
  });
  return out;
}

AnyCoroutine::AnyCoroutine(AnyCoroutine&& o) noexcept
    : h_(std::exchange(o.h_, {})), type_(o.type_), make_(o.make_) {}
AnyCoroutine& AnyCoroutine::operator=(AnyCoroutine&& o) noexcept {
  if (this != &o) {
    if (h_) h_.destroy();
    h_ = std::exchange(o.h_, {});
    type_ = o.type_;
    make_ = o.make_;
  }
  return *this;
}
AnyCoroutine::~AnyCoroutine() {
  if (h_) h_.destroy();
}

TaskBase make_task(EventLoop& loop, AnyCoroutine coro, std::string name) {
  if (!coro.h_) throw std::invalid_argument("make_task: empty coroutine");
  return coro.make_(loop, std::exchange(coro.h_, {}), std::move(name));
}

}  // namespace loop

// loop::Task<T>: a Future that drives a Coroutine<T> (asyncio.Task).
#pragma once

#include <memory>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "loop/coroutine.hpp"

namespace loop {

namespace detail {

std::string next_task_name();

template <class T>
class TaskState final : public FutureState<T>, public TaskStateBase {
 public:
  using Handle = typename Coroutine<T>::handle_type;

  TaskState(EventLoop* loop, Handle h, std::string name) : FutureState<T>(loop), top_(h) {
    this->is_task_ = true;
    name_ = name.empty() ? next_task_name() : std::move(name);
    top_.promise().task = this;
    resume_point_ = top_;
    context_ = ContextRef::make();
    if (auto* cur = current_context_data()) context_->vars = cur->vars;
  }
  ~TaskState() override {
    this->report_unretrieved([this] { return repr(); });
    if (top_) top_.destroy();
  }

  FutureStateBase& as_future() override { return *this; }
  bool cancel(std::string msg = {}) override { return task_cancel(std::move(msg)); }
  /// As asyncio's: "<Task pending name='Task-1'>", "<Task finished name='t' result=42>".
  std::string repr() const override {
    return std::string("<Task ") + this->status_word() + " name='" + name_ + "'" +
           this->outcome_repr() + ">";
  }
  void abandon() override {
    resume_point_ = {};
    fut_waiter_.reset();
    this->drop_callbacks();
    if (top_) std::exchange(top_, {}).destroy();
  }
  void start() { schedule_first_step(); }

 private:
  bool frame_done() const override { return top_.done(); }
  void on_coroutine_done(std::exception_ptr pending) override {
    // The frame is finished (or was never started because the task was cancelled first).
    std::exception_ptr exc = pending ? pending : top_.promise().exception;
    using Slot = std::conditional_t<std::is_void_v<T>, bool, T>;
    std::optional<Slot> value;
    if constexpr (!std::is_void_v<T>) {
      if (!exc) value = std::move(top_.promise().value);
    }
    top_.destroy();
    top_ = {};
    resume_point_ = {};
    fut_waiter_.reset();
    if (exc) {
      bool cancelled = false;
      try {
        std::rethrow_exception(exc);
      } catch (const CancelledError& e) {
        cancelled = true;
        this->FutureStateBase::cancel(e.what());
      } catch (...) {
      }
      if (!cancelled) this->set_exception(exc);
    } else if (must_cancel_) {
      // Cancelled while its last step ran: it is cancelled, not finished (as asyncio).
      must_cancel_ = false;
      this->FutureStateBase::cancel(must_cancel_msg_);
    } else if constexpr (std::is_void_v<T>) {
      this->set_result();
    } else {
      this->set_result(std::move(*value));
    }
  }

  Handle top_;
};

}  // namespace detail

/// An untyped handle to a task of any result type (what task factories return, what
/// all_tasks() lists).
class TaskBase {
 public:
  TaskBase() = default;
  explicit TaskBase(std::shared_ptr<detail::TaskStateBase> state) : state_(std::move(state)) {}
  bool done() const { return state_->as_future().done(); }
  bool cancelled() const { return state_->as_future().cancelled(); }
  bool cancel(std::string msg = {}) const { return state_->as_future().cancel(std::move(msg)); }
  const std::string& get_name() const { return state_->name(); }
  void set_name(std::string name) const { state_->set_name(std::move(name)); }
  std::string repr() const { return state_->as_future().repr(); }
  const std::shared_ptr<detail::TaskStateBase>& state() const { return state_; }
  explicit operator bool() const { return static_cast<bool>(state_); }
  bool operator==(const TaskBase& o) const { return state_ == o.state_; }

 private:
  std::shared_ptr<detail::TaskStateBase> state_;
};

/// A scheduled coroutine; a Future of its result.
template <class T = void>
class Task : public Future<T> {
 public:
  Task() = default;
  explicit Task(std::shared_ptr<detail::TaskState<T>> state)
      : Future<T>(state), task_(std::move(state)) {}

  const std::string& get_name() const { return task_->name(); }
  void set_name(std::string name) const { task_->set_name(std::move(name)); }
  operator TaskBase() const { return TaskBase(task_->shared()); }

  /// Starts a task on `loop` without consulting its task factory.
  static Task create(EventLoop& loop, Coroutine<T> coro, std::string name = {}) {
    loop.check_closed();
    auto state = std::allocate_shared<detail::TaskState<T>>(
        detail::BlockAllocator<detail::TaskState<T>>(), &loop, coro.release(), std::move(name));
    state->start();
    return Task(std::move(state));
  }

 private:
  std::shared_ptr<detail::TaskState<T>> task_;
};

/// Creates a task the default way: what a task factory calls to make the task it returns.
TaskBase make_task(EventLoop& loop, AnyCoroutine coro, std::string name = {});

template <class T>
AnyCoroutine::AnyCoroutine(Coroutine<T>&& coro)
    : h_(coro.release()),
      type_(&typeid(T)),
      make_(+[](EventLoop& loop, std::coroutine_handle<> h, std::string name) -> TaskBase {
        auto typed = Coroutine<T>::handle_type::from_address(h.address());
        return Task<T>::create(loop, Coroutine<T>(typed), std::move(name));
      }) {}

template <class T>
Task<T> EventLoop::create_task(Coroutine<T> coro, std::string name) {
  check_closed();
  if (!task_factory_) return Task<T>::create(*this, std::move(coro), std::move(name));
  TaskBase made = task_factory_(*this, AnyCoroutine(std::move(coro)));
  auto typed =
      std::dynamic_pointer_cast<detail::TaskState<T>>(made.state()->as_future().shared_from_this());
  if (!typed) throw std::logic_error("the task factory returned a task of another result type");
  if (!name.empty()) typed->set_name(std::move(name));
  return Task<T>(std::move(typed));
}

/// The task running now in this thread (asyncio.current_task()); empty outside tasks.
TaskBase current_task();
/// The tasks of `loop` not yet done (asyncio.all_tasks()).
std::vector<TaskBase> all_tasks(EventLoop& loop);

// ---- run_until_complete ------------------------------------------------------------------

template <class T>
T EventLoop::run_future_until_complete(Future<T> future) {
  check_closed();
  check_running();
  if (&future.get_loop() != this)
    throw std::invalid_argument(
        "The future belongs to a different loop than the one specified as the loop argument");
  std::uint64_t id = future.add_done_callback([this](Future<T> f) {
    (void)f;
    stop();
  });
  try {
    run_forever();
  } catch (...) {
    future.remove_done_callback(id);
    throw;
  }
  future.remove_done_callback(id);
  if (!future.done()) throw std::runtime_error("Event loop stopped before Future completed.");
  if constexpr (std::is_void_v<T>) {
    future.result();
  } else if constexpr (std::is_copy_constructible_v<T>) {
    return T(future.result());
  } else {
    return future.state()->take_result();
  }
}

template <class T>
T EventLoop::run_until_complete(Future<T> future) {
  return run_future_until_complete(std::move(future));
}
template <class T>
T EventLoop::run_until_complete(Task<T> task) {
  return run_future_until_complete(Future<T>(task));
}
template <class T>
T EventLoop::run_until_complete(Coroutine<T> coro) {
  check_closed();
  check_running();  // before the task exists: a refused call must not start the coroutine
  Task<T> task = create_task(std::move(coro));
  // If it does not complete, the caller gets an exception: nothing to log at destruction.
  static_cast<TaskBase>(task).state()->set_log_destroy_pending(false);
  return run_future_until_complete(Future<T>(std::move(task)));
}

}  // namespace loop

#include "loop/tasks.hpp"

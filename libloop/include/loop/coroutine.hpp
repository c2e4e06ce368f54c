// loop::Coroutine<T>: the return type of a C++20 coroutine the loop can run, asyncio's
// "coroutine object". Lazy: nothing runs until it is awaited or wrapped in a Task.
//
// Awaiting one coroutine from another transfers control symmetrically (no stack growth, no trip
// through the loop), as `await coro()` runs the callee inline in asyncio. Only futures suspend
// the Task; the Task resumes the innermost suspended frame when the future is done.
#pragma once

#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "loop/block_cache.hpp"
#include "loop/future.hpp"

namespace loop {

namespace detail {

// What a running coroutine needs from the Task that drives it.
class TaskStateBase {
 public:
  virtual ~TaskStateBase() = default;
  virtual FutureStateBase& as_future() = 0;

  /// The coroutine at `h` waits for `fut`; the task steps again once it is done.
  void suspend_on(FutureStateBase& fut, std::coroutine_handle<> h);
  /// The coroutine at `h` yields to the loop for one iteration (asyncio's bare `yield`).
  void suspend_yield(std::coroutine_handle<> h);
  /// Rethrows an exception sent into the coroutine (the CancelledError of cancel()).
  void throw_if_pending();
  /// Task.__wakeup: the future it waited on is done.
  void wakeup() { step(); }

  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }
  EventLoop& loop() { return as_future().loop(); }
  std::shared_ptr<TaskStateBase> shared() {
    return std::shared_ptr<TaskStateBase>(as_future().shared_from_this(), this);
  }
  /// The future this task waits on, if any (Task._fut_waiter).
  const std::shared_ptr<FutureStateBase>& waiting_on() const { return fut_waiter_; }
  /// Destroys the coroutine frame of a task that will never run again (its loop is going).
  virtual void abandon() = 0;
  /// asyncio's _log_destroy_pending: whether a loop destroyed while this task is pending
  /// reports "Task was destroyed but it is pending!" (run_until_complete's own task does not:
  /// its caller got an exception already).
  bool log_destroy_pending() const { return log_destroy_pending_; }
  void set_log_destroy_pending(bool log) { log_destroy_pending_ = log; }

 protected:
  void step();                        // Task.__step
  bool task_cancel(std::string msg);  // Task.cancel
  virtual void on_coroutine_done(std::exception_ptr pending) = 0;
  virtual bool frame_done() const = 0;
  void schedule_first_step();

  std::string name_;
  std::coroutine_handle<> resume_point_;
  bool started_ = false;
  std::shared_ptr<FutureStateBase> fut_waiter_;
  bool must_cancel_ = false;
  bool log_destroy_pending_ = true;
  std::string must_cancel_msg_;
  std::exception_ptr pending_exception_;
  ContextRef context_;
  HandleRef wakeup_handle_;  // Task.__wakeup (make_task_wakeup_handle), made at the first await
};

TaskStateBase* current_task_state() noexcept;

struct PromiseBase {
  // A frame per call: from the loop's slab allocator, not malloc (loop/block_cache.hpp). The
  // frame's alignment is not passed to operator new, so the default 16 bytes is assumed.
  static void* operator new(std::size_t size) { return allocate_block(size); }
  static void operator delete(void* p, std::size_t size) noexcept { deallocate_block(p, size); }

  TaskStateBase* task = nullptr;
  std::coroutine_handle<> continuation;
  std::exception_ptr exception;

  std::suspend_always initial_suspend() noexcept { return {}; }
  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      auto next = h.promise().continuation;
      return next ? next : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { exception = std::current_exception(); }
};

template <class T>
struct Promise : PromiseBase {
  std::optional<T> value;
  template <class U>
  requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) { value.emplace(std::forward<U>(v)); }
  T take() {
    if (exception) std::rethrow_exception(exception);
    return std::move(*value);
  }
};

template <>
struct Promise<void> : PromiseBase {
  void return_void() noexcept {}
  void take() {
    if (exception) std::rethrow_exception(exception);
  }
};

// co_await on a Future from inside a coroutine driven by a Task.
template <class T>
struct FutureAwaiter {
  std::shared_ptr<FutureState<T>> state;
  TaskStateBase* task = nullptr;

  bool await_ready() const noexcept { return state->done(); }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    if constexpr (requires { h.promise().task; }) task = h.promise().task;
    if (!task) throw std::runtime_error("a Future can only be awaited inside a Task");
    task->suspend_on(*state, h);
  }
  decltype(auto) await_resume() {
    if (task) task->throw_if_pending();
    if constexpr (std::is_void_v<T>) {
      state->result();
    } else if constexpr (std::is_copy_constructible_v<T>) {
      return T(state->result());
    } else {
      return state->take_result();
    }
  }
};

// One trip through the loop: the Task is stepped again by call_soon.
struct YieldAwaiter {
  TaskStateBase* task = nullptr;
  bool await_ready() const noexcept { return false; }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    if constexpr (requires { h.promise().task; }) task = h.promise().task;
    if (!task) throw std::runtime_error("loop::sleep(0) can only be awaited inside a Task");
    task->suspend_yield(h);
  }
  void await_resume() {
    if (task) task->throw_if_pending();
  }
};

}  // namespace detail

template <class T>
auto Future<T>::operator co_await() const {
  return detail::FutureAwaiter<T>{state_};
}

/// The coroutine type: `loop::Coroutine<int> answer() { co_return 42; }`.
template <class T = void>
class [[nodiscard]] Coroutine {
 public:
  using value_type = T;
  struct promise_type : detail::Promise<T> {
    Coroutine get_return_object() {
      return Coroutine(std::coroutine_handle<promise_type>::from_promise(*this));
    }
  };
  using handle_type = std::coroutine_handle<promise_type>;

  Coroutine() = default;
  explicit Coroutine(handle_type h) : h_(h) {}
  Coroutine(Coroutine&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Coroutine& operator=(Coroutine&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  ~Coroutine() {
    if (h_) h_.destroy();
  }

  explicit operator bool() const { return static_cast<bool>(h_); }
  handle_type handle() const { return h_; }
  /// Gives up ownership of the frame (a Task takes it).
  handle_type release() { return std::exchange(h_, {}); }

  struct Awaiter {
    handle_type h;
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
      if constexpr (requires { parent.promise().task; }) h.promise().task = parent.promise().task;
      h.promise().continuation = parent;
      return h;
    }
    decltype(auto) await_resume() { return h.promise().take(); }
  };
  /// `co_await coro` runs it inline in the awaiting coroutine's Task.
  Awaiter operator co_await() && {
    if (!h_) throw std::invalid_argument("awaiting an empty Coroutine");
    return Awaiter{h_};
  }

 private:
  handle_type h_;
};

/// A Coroutine<T> of any T, for task factories (set_task_factory).
class AnyCoroutine {
 public:
  template <class T>
  explicit AnyCoroutine(Coroutine<T>&& coro);
  AnyCoroutine(AnyCoroutine&&) noexcept;
  AnyCoroutine& operator=(AnyCoroutine&&) noexcept;
  ~AnyCoroutine();

  std::coroutine_handle<> handle() const { return h_; }
  const std::type_info& result_type() const { return *type_; }

 private:
  friend TaskBase make_task(EventLoop& loop, AnyCoroutine coro, std::string name);
  std::coroutine_handle<> h_;
  const std::type_info* type_ = nullptr;
  TaskBase (*make_)(EventLoop&, std::coroutine_handle<>, std::string) = nullptr;
};

}  // namespace loop

// loop::Future<T>: asyncio.Future. Done-callbacks are scheduled with call_soon, never run inline.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "loop/block_cache.hpp"
#include "loop/context.hpp"
#include "loop/errors.hpp"
#include "loop/event_loop.hpp"

namespace loop {

namespace detail {

enum class FutureStatus : std::uint8_t { pending, cancelled, finished };

class TaskStateBase;

// The untyped part of a future's state: status, exception and callbacks.
class FutureStateBase : public std::enable_shared_from_this<FutureStateBase> {
 public:
  explicit FutureStateBase(EventLoop* loop) : loop_(loop), link_(loop->link()) {
    // asyncio's Future.__init__: in debug mode a future remembers where it was made
    // (_source_traceback), for the reports about it.
    if (loop->get_debug()) origin_ = capture_origin();
  }
  virtual ~FutureStateBase();  // reports an exception nobody retrieved
  FutureStateBase(const FutureStateBase&) = delete;
  FutureStateBase& operator=(const FutureStateBase&) = delete;

  EventLoop& loop() const { return *loop_; }
  FutureStatus status() const { return status_; }
  bool done() const { return status_ != FutureStatus::pending; }
  bool cancelled() const { return status_ == FutureStatus::cancelled; }

  /// Future.cancel(); a Task overrides it to cancel what it waits on.
  virtual bool cancel(std::string msg = {});
  void set_exception(std::exception_ptr e);
  /// Throws CancelledError if cancelled, InvalidStateError if pending.
  std::exception_ptr exception();
  /// Throws unless finished with a result (the shared half of result()).
  void check_result();
  /// asyncio's `_log_traceback = False`: an exception nobody retrieves goes unreported.
  void silence_unretrieved() { exception_retrieved_ = true; }

  using Callback = std::function<void()>;
  std::uint64_t add_done_callback(Callback cb, ContextRef ctx);
  /// add_done_callback(task.__wakeup): `wakeup` is the task's handle from
  /// make_task_wakeup_handle, which holds the task weakly (a task nobody holds is not kept
  /// alive by what it awaits); no std::function for it.
  void add_task_wakeup(HandleRef wakeup, ContextRef ctx);
  std::size_t remove_done_callback(std::uint64_t id);
  /// Makes a future that finished with a result, and has no callbacks left, pending again;
  /// false (and unchanged) otherwise. Only for the owner of a future nobody else holds, to
  /// await it anew without allocating another (a StreamReader's waiter, one per read).
  bool reset_to_pending();

  /// "<Future pending>", "<Task finished name='t' result=...>" and the like.
  virtual std::string repr() const;
  bool is_task() const { return is_task_; }
  /// Where it was made, in debug mode (null otherwise).
  const Origin* origin() const { return origin_.get(); }
  const std::string& cancel_message() const { return cancel_message_; }

 protected:
  void assert_pending(const char* what) const;
  /// RuntimeError("Event loop is closed") when the loop is closed or destroyed.
  void check_loop_open() const;
  /// "Future/Task exception was never retrieved", once, from the most derived destructor (a
  /// Task's name is gone by the time ~FutureStateBase runs). `make_repr` builds the future's
  /// description, only when there is something to report (most futures die with nothing).
  template <class MakeRepr>
  void report_unretrieved(MakeRepr make_repr) noexcept {
    // asyncio reports this from Future.__del__; a loop already destroyed has nobody to tell.
    if (!exception_ || exception_retrieved_ || !link_->alive.load(std::memory_order_acquire))
      return;
    exception_retrieved_ = true;
    try {
      call_unretrieved_handler(make_repr());
    } catch (...) {  // the description could not be built (out of memory)
    }
  }
  void call_unretrieved_handler(const std::string& repr_text) noexcept;
  void mark_finished();  // status finished + schedule callbacks
  void schedule_callbacks();
  /// Drops the callbacks of a future that will never complete (its task was abandoned by a
  /// dying loop): they may hold the futures that hold this one, a cycle that would leak.
  void drop_callbacks() noexcept;
  virtual std::string result_repr() const { return {}; }
  /// "pending", "cancelled", "finished": the word after the class name in repr().
  const char* status_word() const;
  /// " result=42", " exception=std::runtime_error: boom" or "".
  std::string outcome_repr() const;

  EventLoop* loop_;
  std::shared_ptr<LoopLink> link_;  // tells the destructor whether the loop still exists
  FutureStatus status_ = FutureStatus::pending;
  bool is_task_ = false;  // set by TaskState (virtual calls do not reach it in ~FutureStateBase)
  std::exception_ptr exception_;
  bool exception_retrieved_ = false;
  std::string cancel_message_;
  std::unique_ptr<Origin> origin_;

 private:
  struct DoneCallback {
    std::uint64_t id = 0;   // 0: none
    Callback fn;            // or, when it is empty:
    HandleRef task_wakeup;  // a task's Task.__wakeup handle
    ContextRef ctx;
  };
  void add_callback(DoneCallback c);
  bool no_callbacks() const {
    return !first_callback_.id && !second_callback_.id && more_callbacks_.empty();
  }
  /// The inline slot a callback added now takes (the first if there is none, the second if
  /// none follows it), or null: it goes after them.
  DoneCallback* free_inline_slot() {
    if (no_callbacks()) return &first_callback_;
    if (!second_callback_.id && more_callbacks_.empty()) return &second_callback_;
    return nullptr;
  }
  void schedule_done_callback(DoneCallback& c, const char* why);
  void schedule_and_clear(DoneCallback& c);
  // The callbacks in the order they were added (an empty slot, one removed, is skipped). Most
  // futures have one or two, held inline: the awaiting task's wakeup, after a done-callback of
  // the code that made the future (sock_recv's removal of its reader, wait_for's timeout).
  DoneCallback first_callback_;
  DoneCallback second_callback_;
  std::vector<DoneCallback, BlockAllocator<DoneCallback>> more_callbacks_;
  std::uint64_t next_callback_id_ = 1;
};

/// Task.__wakeup for the task `task` whose own future is `task_future` (held weakly). A task
/// makes one and passes it to every future it awaits: it is queued again each time, instead of
/// a handle allocated and freed per await.
HandleRef make_task_wakeup_handle(std::weak_ptr<FutureStateBase> task_future, TaskStateBase* task);

template <class T>
class FutureState : public FutureStateBase {
 public:
  using FutureStateBase::FutureStateBase;
  void set_result(T value) {
    assert_pending("set_result");
    value_.emplace(std::move(value));
    mark_finished();
  }
  const T& result() {
    check_result();
    return *value_;
  }
  T take_result() {
    check_result();
    return std::move(*value_);
  }

 protected:
  std::string result_repr() const override;

 private:
  std::optional<T> value_;
};

template <>
class FutureState<void> : public FutureStateBase {
 public:
  using FutureStateBase::FutureStateBase;
  void set_result() {
    assert_pending("set_result");
    mark_finished();
  }
  void result() { check_result(); }
  void take_result() { check_result(); }
};

std::string repr_value(const std::string& v);
template <class T>
std::string FutureState<T>::result_repr() const {
  if constexpr (std::is_arithmetic_v<T>) {
    return std::to_string(*value_);
  } else if constexpr (std::is_convertible_v<const T&, std::string>) {
    return repr_value(std::string(*value_));
  } else {
    return "...";
  }
}

template <class Promise>
concept LoopPromise = requires(Promise& p) {
  p.task;
};

}  // namespace detail

/// The result of an asynchronous operation (asyncio.Future). A cheap handle to shared state:
/// copies refer to the same future.
template <class T = void>
class Future {
 public:
  using value_type = T;
  using State = detail::FutureState<T>;

  Future() = default;
  explicit Future(std::shared_ptr<State> state) : state_(std::move(state)) {}

  bool done() const { return state_->done(); }
  bool cancelled() const { return state_->cancelled(); }
  /// The result; rethrows the exception; CancelledError if cancelled; InvalidStateError if
  /// not done yet.
  decltype(auto) result() const { return state_->result(); }
  /// The exception (null if it finished with a result); CancelledError if cancelled;
  /// InvalidStateError if not done yet.
  std::exception_ptr exception() const { return state_->exception(); }

  template <class U = T>
  requires(!std::is_void_v<U>) void set_result(U value) const {
    state_->set_result(std::move(value));
  }
  void set_result() const requires std::is_void_v<T> { state_->set_result(); }
  void set_exception(std::exception_ptr e) const { state_->set_exception(std::move(e)); }
  template <class E>
  requires std::is_base_of_v<std::exception, E>
  void set_exception(E e) const { state_->set_exception(std::make_exception_ptr(std::move(e))); }
  /// Cancels the future and schedules its callbacks; false if it was already done.
  bool cancel(std::string msg = {}) const { return state_->cancel(std::move(msg)); }

  /// Schedules cb(future) with call_soon once done (at once, if it is). Returns an id for
  /// remove_done_callback (C++ callables cannot be compared as Python's can).
  std::uint64_t add_done_callback(std::function<void(Future<T>)> cb) const {
    return add_done_callback(std::move(cb), detail::capture_context());
  }
  std::uint64_t add_done_callback(std::function<void(Future<T>)> cb, const Context& ctx) const {
    return add_done_callback(std::move(cb), ctx.data());
  }
  /// Returns the number of callbacks removed (0 or 1).
  std::size_t remove_done_callback(std::uint64_t id) const {
    return state_->remove_done_callback(id);
  }

  EventLoop& get_loop() const { return state_->loop(); }
  std::string repr() const { return state_->repr(); }
  const std::shared_ptr<State>& state() const { return state_; }
  explicit operator bool() const { return static_cast<bool>(state_); }
  bool operator==(const Future& o) const { return state_ == o.state_; }

  /// `co_await future` inside a coroutine run by a Task.
  auto operator co_await() const;

 protected:
  std::uint64_t add_done_callback(std::function<void(Future<T>)> cb, detail::ContextRef ctx) const {
    std::weak_ptr<State> weak = state_;
    return state_->add_done_callback(
        [cb = std::move(cb), weak]() {
          if (auto s = weak.lock()) cb(Future<T>(std::move(s)));
        },
        std::move(ctx));
  }

  std::shared_ptr<State> state_;
};

template <class T>
Future<T> EventLoop::create_future() {
  // A future per await: from the loop's slab allocator, not malloc.
  return Future<T>(std::allocate_shared<detail::FutureState<T>>(
      detail::BlockAllocator<detail::FutureState<T>>(), this));
}

}  // namespace loop

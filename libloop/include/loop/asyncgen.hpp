// loop::AsyncGenerator<T>: an asynchronous generator (PEP 525), the C++ counterpart of an
// `async def` with `yield`: it co_yields values and may co_await in between.
//
//   loop::AsyncGenerator<int> ticks(int n) {
//     for (int i = 0; i < n; ++i) { co_await loop::sleep(1); co_yield i; }
//   }
//   auto gen = ticks(3);
//   while (auto v = co_await gen.next()) use(*v);   // std::nullopt once exhausted
//   co_await gen.aclose();                          // GeneratorExit thrown at the co_yield
//
// Like Coroutine<T>, it runs inside the Task that awaits next()/aclose(). On its first
// iteration it registers with the running loop (asyncio's firstiter hook), so that
// EventLoop::shutdown_asyncgens() can close the ones still open when the program ends. One
// dropped while open is closed by its loop (asyncio's finalizer hook): a task runs aclose().
#pragma once

#include <coroutine>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "loop/coroutine.hpp"

namespace loop {

/// Thrown into an async generator at its co_yield by aclose() (Python's GeneratorExit). Not a
/// std::exception, so `catch (const std::exception&)` in a generator does not swallow it.
struct GeneratorExit {};

namespace detail {

// What the loop's registry sees of an async generator: something it can close.
class AsyncGenStateBase : public std::enable_shared_from_this<AsyncGenStateBase> {
 public:
  AsyncGenStateBase() = default;
  AsyncGenStateBase(const AsyncGenStateBase&) = delete;
  AsyncGenStateBase& operator=(const AsyncGenStateBase&) = delete;
  virtual ~AsyncGenStateBase();
  /// agen.aclose(): throws GeneratorExit into it at its co_yield and runs it to its end.
  virtual Coroutine<void> aclose() = 0;
  /// "<async_generator object at 0x...>".
  std::string repr() const;

  /// The deleter of the AsyncGenerator's reference: asyncio's finalizer hook.
  struct Finalizer {
    void operator()(AsyncGenStateBase* gen) const noexcept { gen->finalize(); }
  };

 protected:
  /// asyncio's firstiter hook: the first iteration registers the generator with its loop.
  void first_iter(TaskStateBase* task);
  /// Started, suspended at a co_yield, not closed: what aclose() would have to unwind.
  virtual bool open() const = 0;

 private:
  // Its last owner let go. Open, and its loop alive and not closed: it is unregistered and
  // kept for a task that closes it, scheduled as call_soon_threadsafe(create_task, aclose());
  // otherwise it is destroyed at once.
  void finalize() noexcept;

  EventLoop* loop_ = nullptr;
  std::shared_ptr<LoopLink> link_;  // the destructor unregisters only from a live loop
};

template <class T>
class AsyncGenState;

}  // namespace detail

template <class T>
class [[nodiscard]] AsyncGenerator {
 public:
  using value_type = T;
  struct promise_type {
    detail::TaskStateBase* task =
        nullptr;  // the Task driving it now (futures awaited inside need it)
    std::coroutine_handle<> continuation;
    std::exception_ptr exception;
    std::optional<T> current;
    bool running = false;  // resumed and not yet back at a co_yield (ag_running)
    bool closing = false;  // aclose(): the co_yield it resumes at throws GeneratorExit
    std::weak_ptr<detail::AsyncGenState<T>> state;

    AsyncGenerator get_return_object();
    std::suspend_always initial_suspend() noexcept { return {}; }

    // co_yield and the end of the body both hand control back to whoever resumed it.
    struct Handoff {
      promise_type* p;
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<>) noexcept {
        p->running = false;
        auto next = std::exchange(p->continuation, {});
        return next ? next : std::noop_coroutine();
      }
      void await_resume() noexcept {}
    };
    // At a co_yield, aclose() resumes it with `closing` set: GeneratorExit is thrown there.
    struct YieldHandoff : Handoff {
      void await_resume() {
        if (this->p->closing) throw GeneratorExit{};
      }
    };
    template <class U>
    requires std::is_convertible_v<U&&, T> YieldHandoff yield_value(U&& value) {
      current.emplace(std::forward<U>(value));
      return YieldHandoff{{this}};
    }
    Handoff final_suspend() noexcept { return Handoff{this}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { exception = std::current_exception(); }
  };
  using handle_type = std::coroutine_handle<promise_type>;

  AsyncGenerator() = default;
  explicit operator bool() const { return static_cast<bool>(state_); }

  /// `co_await gen.next()`: the next value, or std::nullopt once the generator is exhausted
  /// (StopAsyncIteration). Rethrows what the generator body throws.
  auto next();
  /// `co_await gen.aclose()`: closes it; throws what it raises other than GeneratorExit, and
  /// std::runtime_error if it yields again instead of ending.
  Coroutine<void> aclose();
  std::string repr() const;

 private:
  explicit AsyncGenerator(std::shared_ptr<detail::AsyncGenState<T>> s) : state_(std::move(s)) {}
  std::shared_ptr<detail::AsyncGenState<T>> state_;
};

namespace detail {

// Owns the frame; shared by the AsyncGenerator and, while it closes one, shutdown_asyncgens.
template <class T>
class AsyncGenState final : public AsyncGenStateBase {
 public:
  using handle_type = typename AsyncGenerator<T>::handle_type;
  explicit AsyncGenState(handle_type h) : h_(h) {}
  ~AsyncGenState() override {
    // Reached with an open frame only when the loop could not close it (closed, gone, or
    // never iterated it): destroying it runs its locals' destructors, not its catch blocks, as
    // asyncio clears such a frame. Reached while running only from a pending task the loop
    // destroys with itself (the frame then sits at an await); otherwise the resumer holds it.
    if (h_) h_.destroy();
  }

  bool exhausted() const { return !h_ || h_.done() || closed_; }

  // Resumes the frame from `parent` (next() and aclose() alike).
  template <class P>
  std::coroutine_handle<> resume_from(std::coroutine_handle<P> parent, const char* what) {
    auto& p = h_.promise();
    if (p.running)
      throw std::runtime_error(std::string(what) + ": asynchronous generator is already running");
    TaskStateBase* task = nullptr;
    if constexpr (requires { parent.promise().task; }) task = parent.promise().task;
    p.task = task;
    first_iter(task);
    started_ = true;
    p.continuation = parent;
    p.running = true;
    p.current.reset();
    return h_;
  }

  std::optional<T> take_next() {
    if (!h_) return std::nullopt;
    auto& p = h_.promise();
    if (p.exception) {  // what the body threw ends it, and is raised once
      closed_ = true;
      std::rethrow_exception(std::exchange(p.exception, nullptr));
    }
    if (h_.done() || closed_) {
      closed_ = true;
      return std::nullopt;
    }
    return std::move(p.current);
  }

  Coroutine<void> aclose() override;

  handle_type h_;
  bool started_ = false;
  bool closed_ = false;

 protected:
  bool open() const override {
    return started_ && !closed_ && h_ && !h_.done() && !h_.promise().running;
  }
};

template <class T>
struct NextAwaiter {
  std::shared_ptr<AsyncGenState<T>> st;
  bool await_ready() const noexcept { return st->exhausted(); }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) {
    return st->resume_from(parent, "anext()");
  }
  std::optional<T> await_resume() { return st->take_next(); }
};

// Resumes the frame with `closing` set: the co_yield it sits at throws GeneratorExit.
template <class T>
struct CloseAwaiter {
  AsyncGenState<T>* st;
  bool await_ready() const noexcept { return false; }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) {
    auto h = st->resume_from(parent, "aclose()");
    st->h_.promise().closing = true;
    return h;
  }
  void await_resume() {}
};

template <class T>
Coroutine<void> AsyncGenState<T>::aclose() {
  auto keep = this->shared_from_this();  // shutdown_asyncgens may hold the only other reference
  if (closed_ || !h_ || h_.done()) {
    closed_ = true;
    co_return;
  }
  if (!started_) {
    // Never iterated: nothing to unwind (Python marks it closed without running it).
    closed_ = true;
    co_return;
  }
  co_await CloseAwaiter<T>{this};
  auto& p = h_.promise();
  if (!h_.done()) {
    closed_ = true;  // it yielded instead of ending
    throw std::runtime_error("async generator ignored GeneratorExit");
  }
  closed_ = true;
  if (auto e = std::exchange(p.exception, nullptr)) {
    try {
      std::rethrow_exception(e);
    } catch (const GeneratorExit&) {
      // The expected way out.
    }
  }
}

}  // namespace detail

template <class T>
AsyncGenerator<T> AsyncGenerator<T>::promise_type::get_return_object() {
  // Not make_shared: the deleter decides whether the loop closes it first.
  std::shared_ptr<detail::AsyncGenState<T>> s(
      new detail::AsyncGenState<T>(handle_type::from_promise(*this)),
      detail::AsyncGenStateBase::Finalizer{});
  state = s;
  return AsyncGenerator(std::move(s));
}

template <class T>
auto AsyncGenerator<T>::next() {
  if (!state_) throw std::invalid_argument("next() on an empty AsyncGenerator");
  return detail::NextAwaiter<T>{state_};
}

template <class T>
Coroutine<void> AsyncGenerator<T>::aclose() {
  if (!state_) throw std::invalid_argument("aclose() on an empty AsyncGenerator");
  return state_->aclose();
}

template <class T>
std::string AsyncGenerator<T>::repr() const {
  return state_ ? state_->repr() : std::string("<async_generator none>");
}

}  // namespace loop

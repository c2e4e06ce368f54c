// asyncio's task helpers: sleep, gather, wait_for, shield, ensure_future.
#pragma once

#include <cstddef>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "loop/task.hpp"

namespace loop {

/// Suspends the current task for `delay` seconds (asyncio.sleep). sleep(0) yields for exactly
/// one loop iteration.
Coroutine<void> sleep(double delay);

/// Like asyncio.sleep(delay, result).
template <class T>
Coroutine<T> sleep(double delay, T result) {
  co_await sleep(delay);
  co_return result;
}

/// A Future for anything awaitable (asyncio.ensure_future): futures and tasks as they are,
/// coroutines wrapped in a Task.
template <class T>
Future<T> ensure_future(Future<T> f) {
  return f;
}
template <class T>
Future<T> ensure_future(Task<T> t) {
  return t;
}
template <class T>
Future<T> ensure_future(Coroutine<T> c, EventLoop* loop = nullptr) {
  EventLoop& l = loop ? *loop : get_event_loop();
  return l.create_task(std::move(c));
}

namespace detail {
template <class A>
struct awaitable_result;
template <class T>
struct awaitable_result<Future<T>> {
  using type = T;
};
template <class T>
struct awaitable_result<Task<T>> {
  using type = T;
};
template <class T>
struct awaitable_result<Coroutine<T>> {
  using type = T;
};
template <class A>
using awaitable_result_t = typename awaitable_result<std::decay_t<A>>::type;

// void results become std::monostate in gather's tuple.
template <class T>
using gather_slot_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
gather_slot_t<T> take_slot(const Future<T>& f) {
  if constexpr (std::is_void_v<T>) {
    f.result();
    return {};
  } else {
    return f.result();
  }
}
}  // namespace detail

namespace detail {
// asyncio's _GatheringFuture: cancelling it cancels the children (at once, not a callback
// later); it becomes cancelled itself when a cancelled child reports back.
template <class R>
class GatheringState final : public FutureState<R> {
 public:
  GatheringState(EventLoop* loop, std::vector<std::shared_ptr<FutureStateBase>> children)
      : FutureState<R>(loop), children_(std::move(children)) {}
  bool cancel(std::string msg = {}) override {
    if (this->done()) return false;
    bool ret = false;
    for (auto& child : children_)
      if (child->cancel(msg)) ret = true;
    if (ret) cancel_requested_ = true;
    return ret;
  }
  bool cancel_requested() const { return cancel_requested_; }

 private:
  std::vector<std::shared_ptr<FutureStateBase>> children_;
  bool cancel_requested_ = false;
};

// The child done-callback of gather (return_exceptions=False): the first exception or
// cancellation finishes the outer future; later ones are marked retrieved. Returns true when
// every child finished and the outer future should get its result now.
template <class R, class T>
bool gather_child_done(GatheringState<R>& outer, std::size_t& nfinished, std::size_t nfuts,
                       const Future<T>& fut) {
  ++nfinished;
  if (outer.done()) {
    if (!fut.cancelled()) (void)fut.exception();  // mark it retrieved
    return false;
  }
  if (fut.cancelled()) {
    outer.set_exception(std::make_exception_ptr(CancelledError(fut.state()->cancel_message())));
    return false;
  }
  if (auto e = fut.exception()) {
    outer.set_exception(e);
    return false;
  }
  if (nfinished < nfuts) return false;
  if (outer.cancel_requested()) {
    outer.set_exception(std::make_exception_ptr(CancelledError()));
    return false;
  }
  return true;
}
}  // namespace detail

/// Runs awaitables concurrently; the result is the results in order (asyncio.gather). The first
/// exception is propagated to the gathering future at once; cancelling the gathering future
/// cancels every child. With no children the result is ready at once, on `loop` (default:
/// get_event_loop(), as asyncio.gather()).
template <class T>
Future<std::vector<detail::gather_slot_t<T>>> gather(std::vector<Future<T>> children,
                                                     EventLoop* loop_arg = nullptr) {
  using Slot = detail::gather_slot_t<T>;
  using R = std::vector<Slot>;
  EventLoop& loop = !children.empty() ? children.front().get_loop()
                    : loop_arg        ? *loop_arg
                                      : get_event_loop();
  std::vector<std::shared_ptr<detail::FutureStateBase>> states;
  for (auto& c : children) states.push_back(c.state());
  auto outer = std::make_shared<detail::GatheringState<R>>(&loop, std::move(states));
  if (children.empty()) {
    outer->set_result({});
    return Future<R>(outer);
  }
  struct Shared {
    std::vector<Future<T>> children;
    std::size_t finished = 0;
  };
  auto shared = std::make_shared<Shared>(Shared{children, 0});
  // The children's callbacks keep the outer future alive until they ran (as asyncio's do);
  // the cycle outer -> children -> callbacks -> outer ends when the children are done.
  for (auto& child : children) {
    child.add_done_callback([shared, o = outer](Future<T> fut) {
      if (!detail::gather_child_done(*o, shared->finished, shared->children.size(), fut)) return;
      R results;
      results.reserve(shared->children.size());
      for (auto& c : shared->children) results.push_back(detail::take_slot(c));
      o->set_result(std::move(results));
    });
  }
  return Future<R>(outer);
}

/// gather over different awaitables: co_await gather(a(), b(), fut) -> std::tuple (void results
/// are std::monostate). Like asyncio.gather, and like the vector form, it schedules the
/// coroutines at the call, left to right, and returns the gathering future: cancelling it (or
/// the task awaiting it) cancels every child.
template <class... A>
requires(sizeof...(A) > 0)
    Future<std::tuple<detail::gather_slot_t<detail::awaitable_result_t<A>>...>> gather(A... aws) {
  using R = std::tuple<detail::gather_slot_t<detail::awaitable_result_t<A>>...>;
  using Children = std::tuple<Future<detail::awaitable_result_t<A>>...>;
  struct Shared {
    Children children;
    std::size_t finished = 0;
  };
  // Braced initialisation: its elements are evaluated in order, a call's arguments are not
  // (GCC wraps them right to left), and the wrapping schedules each coroutine's first step.
  auto shared = std::make_shared<Shared>(Shared{Children{ensure_future(std::move(aws))...}, 0});
  EventLoop& loop = std::get<0>(shared->children).get_loop();
  std::vector<std::shared_ptr<detail::FutureStateBase>> states;
  std::apply([&](auto&... f) { (states.push_back(f.state()), ...); }, shared->children);
  auto outer = std::make_shared<detail::GatheringState<R>>(&loop, std::move(states));
  // As in the vector form, the children's callbacks keep the outer future alive.
  std::apply(
      [&](auto&... f) {
        (f.add_done_callback([o = outer, shared](auto fut) {
          if (!detail::gather_child_done(*o, shared->finished, sizeof...(A), fut)) return;
          o->set_result(
              std::apply([](auto&... c) { return R{detail::take_slot(c)...}; }, shared->children));
        }),
         ...);
      },
      shared->children);
  return Future<R>(outer);
}

namespace detail {
// Cancels `fut` and waits until it is really done (asyncio's _cancel_and_wait).
Coroutine<void> cancel_and_wait(std::shared_ptr<FutureStateBase> fut);
}  // namespace detail

/// Waits for `aw` with a deadline (asyncio.wait_for): TimeoutError after `timeout` seconds, once
/// the awaitable has been cancelled. Cancelling the waiting task cancels the awaitable too.
template <class A>
Coroutine<detail::awaitable_result_t<A>> wait_for(A aw, double timeout) {
  using T = detail::awaitable_result_t<A>;
  Future<T> fut = ensure_future(std::move(aw));
  EventLoop& loop = fut.get_loop();
  if (timeout <= 0) {
    if (fut.done()) co_return fut.result();
    co_await detail::cancel_and_wait(fut.state());
    throw TimeoutError();
  }
  auto waiter = loop.create_future<void>();
  auto release = [waiter]() {
    if (!waiter.done()) waiter.set_result();
  };
  TimerHandle timeout_handle = loop.call_later(timeout, release);
  std::uint64_t cb = fut.add_done_callback([release](Future<T>) { release(); });
  std::exception_ptr cancelled;
  try {
    co_await waiter;
  } catch (const CancelledError&) {
    cancelled = std::current_exception();  // re-raised as is, with cancel()'s message
  }
  timeout_handle.cancel();
  if (cancelled) {
    fut.remove_done_callback(cb);
    fut.cancel();
    std::rethrow_exception(cancelled);
  }
  if (fut.done()) co_return fut.result();
  fut.remove_done_callback(cb);
  co_await detail::cancel_and_wait(fut.state());
  throw TimeoutError();
}

/// Protects an awaitable from cancellation (asyncio.shield): cancelling the returned future
/// leaves `inner` running.
template <class T>
Future<T> shield(Future<T> inner) {
  if (inner.done()) return inner;
  auto outer = inner.get_loop().template create_future<T>();
  std::uint64_t id = inner.add_done_callback([outer](Future<T> in) {
    if (outer.cancelled()) {
      if (!in.cancelled()) (void)in.exception();
      return;
    }
    if (in.cancelled()) {
      outer.cancel();
    } else if (auto e = in.exception()) {
      outer.set_exception(e);
    } else if constexpr (std::is_void_v<T>) {
      outer.set_result();
    } else {
      outer.set_result(in.result());
    }
  });
  outer.add_done_callback([inner, id](Future<T>) {
    if (!inner.done()) inner.remove_done_callback(id);
  });
  return outer;
}

}  // namespace loop

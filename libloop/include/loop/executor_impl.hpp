// EventLoop::run_in_executor: work on another thread, its outcome delivered as a Future.
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

#include "loop/future.hpp"

namespace loop {

template <class F, class... Args>
auto EventLoop::run_in_executor(Executor* executor, F&& fn, Args&&... args)
    -> Future<std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>> {
  using R = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;
  check_closed();
  if (debug_) check_thread();
  Future<R> fut = create_future<R>();
  Executor& ex = executor ? *executor : default_executor();
  // Cancelling the future cancels work that has not started, as asyncio's _chain_future
  // cancels the concurrent.futures.Future (its first done-callback, as here).
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  fut.add_done_callback([cancelled](Future<R> f) {
    if (f.cancelled()) cancelled->store(true, std::memory_order_release);
  });
  // The worker reaches the loop through its link: the loop may be closed or gone by then.
  ex.submit([link = link(), state = fut.state(), cancelled, fn = std::forward<F>(fn),
             ... args = std::forward<Args>(args)]() mutable {
    // `state` moves into what is posted: the worker keeps no reference to the loop's future
    // (nor to the exception in it), so it is always released on the loop's thread.
    std::function<void()> deliver;
    if (cancelled->load(std::memory_order_acquire)) {
      link->post(detail::make_handle([state = std::move(state)] {}));
      return;
    }
    try {
      if constexpr (std::is_void_v<R>) {
        std::invoke(fn, args...);
        deliver = [state = std::move(state)] {
          if (!state->done()) state->set_result();
        };
      } else {
        auto r = std::make_shared<R>(std::invoke(fn, args...));
        deliver = [state = std::move(state), r = std::move(r)]() mutable {
          if (!state->done()) state->set_result(std::move(*r));
        };
      }
    } catch (...) {
      deliver = [state = std::move(state), e = std::current_exception()] {
        if (!state->done()) state->set_exception(e);
      };
    }
    link->post(detail::make_handle(std::move(deliver)));
  });
  return fut;
}

}  // namespace loop

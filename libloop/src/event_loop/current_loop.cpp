// get_running_loop / get_event_loop / set_event_loop / new_event_loop: asyncio's policy for the
// default case, one loop per thread.
#include <pthread.h>

#include "loop/event_loop.hpp"

namespace loop {

namespace {
thread_local EventLoop* t_running = nullptr;
thread_local EventLoop* t_current = nullptr;
thread_local std::unique_ptr<EventLoop> t_owned;  // the main thread's implicit loop

bool is_main_thread() {
  static const pthread_t main_thread = pthread_self();  // first caller: the program's main
  return pthread_equal(main_thread, pthread_self()) != 0;
}
[[maybe_unused]] const bool init_main = is_main_thread();
}  // namespace

namespace detail {
EventLoop* running_loop() noexcept {
  return t_running;
}
void set_running_loop(EventLoop* loop) noexcept {
  t_running = loop;
}
}  // namespace detail

EventLoop& get_running_loop() {
  if (!t_running) throw std::runtime_error("no running event loop");
  return *t_running;
}

EventLoop& get_event_loop() {
  if (t_running) return *t_running;
  if (t_current) return *t_current;
  if (!is_main_thread()) throw std::runtime_error("There is no current event loop in this thread.");
  t_owned = new_event_loop();
  t_current = t_owned.get();
  return *t_current;
}

void set_event_loop(EventLoop* loop) {
  if (t_owned && loop != t_owned.get()) t_owned.reset();
  t_current = loop;
}

std::unique_ptr<EventLoop> new_event_loop() {
  return std::make_unique<EventLoop>();
}

bool detail::LoopLink::post(HandleRef handle) {
  std::lock_guard<std::mutex> lock(mutex);
  if (!loop || loop->is_closed()) return false;
  handle->kind = HandleKind::threadsafe;
  loop->schedule_threadsafe(std::move(handle));
  return true;
}

}  // namespace loop

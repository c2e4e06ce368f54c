// EventLoop: construction, the iteration (asyncio's _run_once), run/stop/close.
#include "loop/event_loop.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "event_loop/slab_heap.hpp"
#include "io/asio_nesting.hpp"
#include "io/poller.hpp"
#include "loop/task.hpp"

namespace loop {

namespace {

// asyncio's MAXIMUM_SELECT_TIMEOUT: never sleep longer than a day in one poll.
constexpr double kMaximumSelectTimeout = 24 * 3600;
// Unmapping a 64 KiB page costs about 15 us here: 16 of them keep a timer about 0.25 ms late.
constexpr std::size_t kTrimPagesBeforeTimedPoll = 16;
constexpr std::size_t kTrimAllPages = static_cast<std::size_t>(-1);
// Rebuild the timer heap when more than this many timers are scheduled and more than this
// fraction of them are cancelled (asyncio's _MIN_SCHEDULED_TIMER_HANDLES and
// _MIN_CANCELLED_TIMER_HANDLES_FRACTION).
constexpr std::size_t kMinScheduledTimerHandles = 100;
constexpr double kMinCancelledTimerHandlesFraction = 0.5;

bool env_debug() {
  const char* v = std::getenv("LOOP_DEBUG");
  return v && *v;
}

}  // namespace

namespace detail {

// asio's epoll fd, watched by the Poller (see io/asio_nesting.hpp).
class AsioReactorWatch final : public PollWatcher {
 public:
  AsioReactorWatch(Poller& poller, asio::io_context& io) : entry_(*this) {
    poller.watch(entry_, asio_reactor_fd(io), EPOLLIN);
    asio_expect_interrupts(io);
  }
  void poll_ready(bool, bool) override { ready = true; }
  bool ready = false;  // asio has something to run: io_context::poll() in this poll phase

 private:
  PollEntry entry_;
};

}  // namespace detail

EventLoop::EventLoop(std::unique_ptr<Clock> clock)
    : io_(1),
      work_(asio::make_work_guard(io_)),
      poller_(std::make_unique<detail::Poller>()),
      asio_watch_(std::make_unique<detail::AsioReactorWatch>(*poller_, io_)),
      clock_(clock ? std::move(clock) : make_steady_clock()),
      debug_(env_debug()),
      link_(std::make_shared<detail::LoopLink>()) {
  link_->loop = this;
}

EventLoop::~EventLoop() {
  {
    // Other threads (executor workers) find the loop gone from now on.
    std::lock_guard<std::mutex> lock(link_->mutex);
    link_->loop = nullptr;
  }
  if (default_executor_) default_executor_->shutdown(true);
  for (auto& retired : retired_executors_) retired->shutdown(true);
  // asyncio logs a pending task when it is garbage collected; here the loop owns pending tasks,
  // so it reports them when it goes, then destroys their frames while it still exists: a frame
  // is never left for the loop to resume, and what a frame's locals report reaches a live loop.
  auto tasks = std::move(tasks_);
  tasks_.clear();
  for (auto& [ptr, task] : tasks) {
    if (task->as_future().done() || !task->log_destroy_pending()) continue;
    ExceptionContext ctx;
    ctx.message = "Task was destroyed but it is pending!";
    ctx.task = task->as_future().shared_from_this();
    if (const detail::Origin* origin = task->as_future().origin())
      ctx.source_traceback = origin->describe();
    call_exception_handler(ctx);
  }
  for (auto& [ptr, task] : tasks) task->abandon();
  tasks.clear();
  {
    std::lock_guard<std::mutex> lock(threadsafe_mutex_);
    threadsafe_queue_.clear();
  }
  ready_.clear();
  trace_scheduled_.clear();
  // A TimerHandle kept by its owner may be cancelled after this: it must not reach the loop.
  timers_.for_each([](detail::HandleImpl& h) { h.scheduled = false; });
  timers_.clear();
  // Transports still open let go of themselves while the reactor exists (one at a time:
  // releasing one may destroy another, which then leaves the set).
  while (!resources_.empty()) {
    detail::LoopResource* r = *resources_.begin();
    resources_.erase(resources_.begin());
    r->registered_ = false;
    r->loop_destroyed();
  }
  default_executor_.reset();
  if (tracer()) tracer_->finish();
  // From here on, futures that outlive the loop no longer report to it.
  link_->alive.store(false, std::memory_order_release);
}

// ---- Running and stopping ----------------------------------------------------------------

void EventLoop::run_forever() {
  check_closed();
  check_running();
  struct RunningScope {
    EventLoop& loop;
    explicit RunningScope(EventLoop& l) : loop(l) {
      loop.running_ = true;
      loop.thread_id_.store(std::this_thread::get_id(), std::memory_order_release);
      detail::set_running_loop(&loop);
    }
    ~RunningScope() {
      loop.stopping_ = false;
      loop.running_ = false;
      loop.thread_id_.store(std::thread::id{}, std::memory_order_release);
      detail::set_running_loop(nullptr);
    }
  } scope(*this);
  trace_flat("loop_start");
  for (;;) {
    run_once();
    if (stopping_) break;
  }
  trace_flat("loop_stop");
}

void EventLoop::stop() {
  stopping_ = true;
}

void EventLoop::close() {
  if (running_) throw std::runtime_error("Cannot close a running event loop");
  if (closed_) return;
  closed_.store(true, std::memory_order_release);
  trace_flat("loop_close", {{"ready", ready_.size()}, {"timers", timers_.size()}});
  close_signal_handlers();  // as asyncio's unix loop: closing removes them
  close_fd_watchers();      // and forgets the selector's registrations
  ready_.clear();
  trace_scheduled_.clear();
  {
    std::lock_guard<std::mutex> lock(threadsafe_mutex_);
    threadsafe_queue_.clear();
  }
  timers_.for_each([](detail::HandleImpl& h) { h.scheduled = false; });
  timers_.clear();
  timer_cancelled_count_ = 0;
  if (default_executor_) default_executor_->shutdown(false);
  if (tracer()) tracer_->flush();
}

void EventLoop::check_closed() const {
  if (closed_.load(std::memory_order_acquire)) throw std::runtime_error("Event loop is closed");
}

void EventLoop::check_running() const {
  if (running_) throw std::runtime_error("This event loop is already running");
  if (detail::running_loop() != nullptr)
    throw std::runtime_error("Cannot run the event loop while another loop is running");
}

void EventLoop::check_thread() const {
  std::thread::id running = thread_id_.load(std::memory_order_acquire);
  if (running == std::thread::id{}) return;
  if (std::this_thread::get_id() != running)
    throw std::runtime_error(
        "Non-thread-safe operation invoked on an event loop other than the current one");
}

// ---- The iteration -----------------------------------------------------------------------

void EventLoop::drop_cancelled_timers() {
  std::size_t sched_count = timers_.size();
  if (sched_count > kMinScheduledTimerHandles &&
      static_cast<double>(timer_cancelled_count_) / static_cast<double>(sched_count) >
          kMinCancelledTimerHandlesFraction) {
    // Too many cancelled timers waste the heap: rebuild it from the live ones.
    std::size_t live = sched_count - std::min(timer_cancelled_count_, sched_count);
    timer_cancelled_count_ = 0;
    timers_.remove_cancelled(live);
  } else {
    // Remove cancelled timers from the front of the heap.
    while (!timers_.empty() && timers_.top().cancelled) {
      --timer_cancelled_count_;
      timers_.pop()->scheduled = false;
    }
  }
}

double EventLoop::poll(double timeout) {
  std::size_t events = 0;
  try {
    if (clock_->is_virtual() && timeout > 0) {
      // Simulated time: look at I/O without waiting; if nothing happened, jump to the timer.
      events = poll_io(0);
      if (events == 0 && ready_.empty() && !timers_.empty())
        clock_->advance_to(timers_.next_when());
    } else {
      events = poll_io(timeout);
    }
  } catch (...) {
    // Watchers and asio handlers only enqueue callbacks; one that throws is a bug in a layer
    // of ours.
    ExceptionContext ctx;
    ctx.message = "Exception in the I/O poll";
    ctx.exception = std::current_exception();
    call_exception_handler(ctx);
  }
  return static_cast<double>(events);
}

// One epoll_wait: the connections and watched fds put their handles on the ready queue, the
// other threads' call_soon_threadsafe handles are moved there, and asio runs what it has.
std::size_t EventLoop::poll_io(double timeout) {
  // Left over by a poll phase that threw: run it now, without waiting for more.
  if (asio_watch_->ready || poller_->wakeup_pending()) timeout = 0;
  auto events = static_cast<std::size_t>(poller_->wait(timeout));
  if (poller_->take_wakeup()) drain_threadsafe();
  if (asio_watch_->ready) {
    asio_watch_->ready = false;
    struct ExpectInterrupts {
      EventLoop& loop;
      bool done = false;
      ~ExpectInterrupts() {
        detail::asio_expect_interrupts(loop.io_);
        if (!done) loop.asio_watch_->ready = true;  // a handler threw: run the rest next time
      }
    } guard{*this};
    events += io_.poll();
    guard.done = true;
  }
  return events;
}

void EventLoop::run_once() {
  drop_cancelled_timers();

  double timeout = -1;  // infinite
  if (!ready_.empty() || stopping_) {
    timeout = 0;
  } else if (!timers_.empty()) {
    timeout = std::clamp(timers_.next_when() - time(), 0.0, kMaximumSelectTimeout);
  }

  if (timeout != 0) {
    // About to wait: whoever follows the trace live gets every record so far; the pages a
    // burst of callbacks emptied go back to the kernel now that no one waits for it (all of
    // them before an open-ended sleep, a bounded number before a timer's).
    if (tracer()) tracer_->flush();
    detail::slab::trim(timeout < 0 ? kTrimAllPages : kTrimPagesBeforeTimedPoll);
  }
  double poll_start = tracer() ? time() : 0;
  double events = poll(timeout);

  // Handle the timers that are due.
  double end_time = time() + clock_->resolution();
  while (!timers_.empty()) {
    if (timers_.next_when() >= end_time) break;
    detail::HandleRef h = timers_.pop();
    h->scheduled = false;
    ready_.push_back(std::move(h));
  }

  // Run exactly the callbacks that are ready now; what they schedule runs next iteration.
  std::size_t ntodo = ready_.size();
  if (tracer()) [[unlikely]] {
    trace_flat("iteration",
               {timeout < 0 ? TraceField("timeout", nullptr) : TraceField("timeout", timeout),
                {"events", static_cast<std::size_t>(events)},
                {"ready", ntodo},
                {"timers", timers_.size()},
                {"poll", end_time - clock_->resolution() - poll_start}});
  }
  for (std::size_t i = 0; i < ntodo && !ready_.empty(); ++i) {
    detail::HandleRef h = ready_.pop_front();
    if (h->cancelled) {
      if (!trace_scheduled_.empty()) [[unlikely]]
        trace_scheduled_.erase(h.get());
      continue;
    }
    run_handle(*h.get());
  }
  ready_.shrink_if_idle();
}

void EventLoop::report_callback_exception(detail::HandleImpl& h, std::exception_ptr e) {
  ExceptionContext context;
  context.message = "Exception in callback " + h.callback_name() + "()";
  context.exception = std::move(e);
  context.handle = Handle(detail::HandleRef(&h));
  if (const detail::Origin* origin = h.origin()) context.source_traceback = origin->describe();
  call_exception_handler(context);
}

void EventLoop::run_handle(detail::HandleImpl& h) {
  detail::ContextData* ctx = h.context.get();
  if (!ctx) {
    empty_context_.vars.reset();
    ctx = &empty_context_;
  }
  const bool timed = debug_ || tracer();
  double t0 = timed ? time() : 0;
  // Named before it runs: a callback may remove or replace itself (e.g. remove_reader). Most
  // of the loop's own handles have a constant name, which costs no string.
  const char* constant_name = timed ? h.constant_name() : nullptr;
  std::string made_name = timed && !constant_name ? h.callback_name() : std::string();
  // Also before it runs: it may queue this same handle again (a task's next step).
  double scheduled = 0;
  if (tracer() || !trace_scheduled_.empty()) [[unlikely]]
    scheduled = take_trace_scheduled(h);
  try {
    detail::ContextScope scope(ctx);
    h.invoke();
  } catch (...) {
    report_callback_exception(h, std::current_exception());
  }
  if (!timed) [[likely]]
    return;
  double dt = time() - t0;
  std::string_view name = constant_name ? std::string_view(constant_name) : made_name;
  if (tracer()) {
    trace_flat("callback", {{"id", h.id},
                            {"name", name},
                            {"kind", detail::kind_name(h.kind)},
                            {"scheduled", scheduled},
                            {"started", t0},
                            {"duration", dt}});
  }
  if (debug_ && dt >= slow_callback_duration) {
    const detail::Origin* created = h.origin();
    std::string origin = created ? " created at " + created->describe() : "";
    std::fprintf(stderr, "loop: Executing <Handle %s()%s> took %.3f seconds\n",
                 std::string(name).c_str(), origin.c_str(), dt);
    trace_flat("slow_callback", {{"id", h.id}, {"name", name}, {"duration", dt}});
  }
}

// ---- Scheduling --------------------------------------------------------------------------

Handle EventLoop::schedule(detail::HandleRef h, const char* /*caller*/) {
  // asyncio's call_soon_threadsafe appends to _ready at once: a handle another thread (or this
  // one, before run_forever) queued before this call goes first.
  if (threadsafe_pending_.load(std::memory_order_acquire)) [[unlikely]]
    drain_threadsafe();
  h->id = next_handle_id_++;
  if (debug_) h->set_origin(detail::capture_origin());
  if (tracer()) [[unlikely]]
    trace_scheduled_[h.get()] = time();
  ready_.push_back(h);
  return Handle(std::move(h));
}

void EventLoop::schedule_threadsafe(detail::HandleRef h) {
  if (thread_id_.load(std::memory_order_acquire) == std::this_thread::get_id()) {
    // Called from the loop's own thread (e.g. from a callback): asyncio appends to _ready at
    // once, so the FIFO order with call_soon is kept.
    h->id = next_handle_id_++;
    if (tracer()) [[unlikely]]
      trace_scheduled_[h.get()] = time();
    ready_.push_back(std::move(h));
    return;
  }
  bool wake;
  {
    std::lock_guard<std::mutex> lock(threadsafe_mutex_);
    wake = threadsafe_queue_.empty();  // else a wake-up is already on its way
    threadsafe_queue_.push_back(std::move(h));
    threadsafe_pending_.store(true, std::memory_order_release);
  }
  // The poller's eventfd is asyncio's self-pipe: the loop's poll returns and moves the
  // handles onto the ready queue, on the loop's thread.
  if (wake) poller_->wake();
}

void EventLoop::drain_threadsafe() {
  std::vector<detail::HandleRef> batch;
  {
    std::lock_guard<std::mutex> lock(threadsafe_mutex_);
    batch.swap(threadsafe_queue_);
    threadsafe_pending_.store(false, std::memory_order_relaxed);
  }
  for (auto& h : batch) {
    h->id = next_handle_id_++;
    if (tracer()) [[unlikely]]
      trace_scheduled_[h.get()] = time();
    ready_.push_back(std::move(h));
  }
}

TimerHandle EventLoop::schedule_timer(detail::HandleRef h, double when) {
  auto& timer = static_cast<detail::TimerHandleImpl&>(*h);
  timer.loop = this;
  timer.when = when;
  h->id = next_handle_id_++;
  h->scheduled = true;
  if (debug_) h->set_origin(detail::capture_origin());
  timers_.push(when, h);
  if (tracer()) [[unlikely]]
    trace_flat("timer_scheduled", {{"id", h->id}, {"name", h->callback_name()}, {"when", when}});
  return TimerHandle(std::move(h));
}

void EventLoop::timer_handle_cancelled(detail::TimerHandleImpl& h) {
  ++timer_cancelled_count_;
  if (tracer()) [[unlikely]]
    trace_flat("timer_cancelled", {{"id", h.id}, {"name", h.callback_name()}, {"when", h.when}});
}

double EventLoop::take_trace_scheduled(const detail::HandleImpl& h) {
  if (h.kind == detail::HandleKind::timer)
    return static_cast<const detail::TimerHandleImpl&>(h).when;
  auto it = trace_scheduled_.find(&h);
  if (it == trace_scheduled_.end()) return 0;
  double scheduled = it->second;
  trace_scheduled_.erase(it);
  return scheduled;
}

void EventLoop::register_task(std::shared_ptr<detail::TaskStateBase> task) {
  detail::TaskStateBase* key = task.get();
  tasks_.emplace(key, std::move(task));
}

void EventLoop::unregister_task(detail::TaskStateBase* task) {
  tasks_.erase(task);
}

// ---- Executor ----------------------------------------------------------------------------

Executor& EventLoop::default_executor() {
  if (!default_executor_) default_executor_ = std::make_unique<ThreadPoolExecutor>();
  return *default_executor_;
}

void EventLoop::set_default_executor(std::unique_ptr<Executor> executor) {
  if (default_executor_) {
    default_executor_->shutdown(false);
    retired_executors_.push_back(std::move(default_executor_));
  }
  default_executor_ = std::move(executor);
}

// ---- Tracing -----------------------------------------------------------------------------

void EventLoop::trace(const char* ev, nlohmann::json fields) {
  if (!tracer()) return;
  fields["ts"] = time();
  fields["ev"] = ev;
  tracer_->record(fields);
}

void EventLoop::trace_flat(const char* ev, std::initializer_list<TraceField> fields) {
  if (!tracer()) return;
  tracer_->record_flat(time(), ev, std::span<const TraceField>(fields.begin(), fields.size()));
}

}  // namespace loop

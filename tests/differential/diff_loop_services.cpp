// Differential scenarios of the loop's services: the exception handler API, signals, the
// executor, call_soon_threadsafe, debug mode, run errors, async generators, the task factory and
// the clock (the asyncio half: diff_loop_services.py).
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <loop/loop.hpp>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "scenario.hpp"

using diff::say;

namespace {

// ---- Helpers --------------------------------------------------------------------------------

std::string exc_text(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return diff::exception_name(x) + ": " + x.what();
  } catch (...) {
    return "unknown";
  }
}

std::string exc_text(const std::exception& x) {
  return diff::exception_name(x) + ": " + x.what();
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string keys_of(const loop::ExceptionContext& c) {
  std::vector<std::string> keys;
  const nlohmann::json j = c.to_json();
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  return join(keys);
}

void say_context(const loop::ExceptionContext& c) {
  say("  handler:", c.message);
  say("  keys:", keys_of(c));
  if (c.exception) say("  exception:", exc_text(c.exception));
}

void recording_handler(loop::EventLoop&, const loop::ExceptionContext& c) {
  say_context(c);
}

// Runs fn with file descriptor 2 redirected to a file; returns what was written there.
std::string capture_fd2(const std::function<void()>& fn) {
  std::fflush(stderr);
  int saved = ::dup(2);
  char path[] = "/tmp/diff_loop_services_XXXXXX";
  int fd = ::mkstemp(path);
  ::dup2(fd, 2);
  ::close(fd);
  fn();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  ::unlink(path);
  return ss.str();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void fail() {
  throw std::runtime_error("callback failed");
}

// threading.Event, with wait(timeout).
class Event {
 public:
  void set() {
    std::lock_guard<std::mutex> lock(m_);
    set_ = true;
    cv_.notify_all();
  }
  void wait(double seconds) {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return set_; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool set_ = false;
};

template <class F>
void try_(const char* name, F&& fn) {
  try {
    fn();
    say(name, "accepted");
  } catch (const std::exception& e) {
    say(name, exc_text(e));
  }
}

}  // namespace

// ---- The exception handler API --------------------------------------------------------------

SCENARIO(exception_handler_set_get_and_custom_contexts) {
  loop::EventLoop lp;
  say("no handler at first:", !lp.get_exception_handler());
  auto fut = lp.create_future<int>();
  lp.set_exception_handler([&](loop::EventLoop& l, const loop::ExceptionContext& c) {
    say("  handler: same loop", &l == &lp);
    say_context(c);
    if (c.future) say("  future is ours:", c.future == fut.state());
  });
  say("handler set:", static_cast<bool>(lp.get_exception_handler()));
  say("message only");
  loop::ExceptionContext one;
  one.message = "custom one";
  lp.call_exception_handler(one);
  say("message and exception");
  loop::ExceptionContext two;
  two.message = "custom two";
  two.exception = std::make_exception_ptr(std::invalid_argument("bad value"));
  lp.call_exception_handler(two);
  say("message and future");
  loop::ExceptionContext three;
  three.message = "custom three";
  three.future = fut.state();
  lp.call_exception_handler(three);
  lp.set_exception_handler(nullptr);
  say("reset:", !lp.get_exception_handler());
  fut.cancel();
  lp.close();
}

SCENARIO(exception_in_call_soon_callback) {
  loop::EventLoop lp;
  loop::Handle failing;
  lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& c) {
    say_context(c);
    say("  handle is the one call_soon returned:", c.handle && c.handle->id() == failing.id());
    say("  handle:", split(c.handle->repr())[0], "cancelled", c.handle->cancelled());
  });
  lp.call_soon([] { say("before"); });
  failing = lp.call_soon(loop::named("fail", &fail));
  lp.call_soon([] { say("after (same iteration)"); });
  lp.call_soon([&] { lp.stop(); });
  lp.run_forever();
  say("loop survived");
  lp.close();
}

SCENARIO(exception_in_timer_callback) {
  loop::EventLoop lp;
  loop::TimerHandle timer;
  lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& c) {
    say_context(c);
    say("  handle is the timer:", c.handle && c.handle->id() == timer.id());
    say("  handle:", split(c.handle->repr())[0], "when matches",
        static_cast<const loop::TimerHandle&>(*c.handle).when() == timer.when());
  });
  timer = lp.call_later(0.01, loop::named("fail", &fail));
  lp.call_later(0.05, [&] {
    say("timer 0.05");
    lp.stop();
  });
  lp.run_forever();
  lp.close();
}

SCENARIO(exception_handler_that_raises) {
  loop::EventLoop lp;
  int calls = 0;
  lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& c) {
    ++calls;
    say("  handler call", calls, "for:", c.message);
    throw std::runtime_error("handler broke");
  });
  std::string err = capture_fd2([&] {
    lp.call_soon(loop::named("fail", &fail));
    lp.call_soon([] { say("next callback runs"); });
    lp.call_soon(loop::named("fail", &fail));
    lp.call_soon([&] { lp.stop(); });
    lp.run_forever();
  });
  say("handler calls:", calls);
  say("handler still set:", static_cast<bool>(lp.get_exception_handler()));
  say("stderr names the handler failure:", contains(err, "Unhandled error in exception handler"));
  say("stderr has the handler's error:", contains(err, "handler broke"));
  say("stderr has the original message:", contains(err, "Exception in callback fail"));
  err = capture_fd2([&] {
    loop::ExceptionContext direct;
    direct.message = "direct";
    lp.call_exception_handler(direct);
  });
  say("direct call survived; reported:", contains(err, "Unhandled error in exception handler"));
  lp.close();
}

namespace {

struct Recorder : loop::Protocol {
  std::string raise_in;
  loop::Future<void> lost;

  void connection_made(loop::BaseTransport&) override {
    say("connection_made");
    if (raise_in == "connection_made") throw std::invalid_argument("made failed");
  }
  void data_received(std::string_view data) override {
    say("data_received", std::string(data));
    if (raise_in == "data_received") throw std::invalid_argument("bad data");
  }
  bool eof_received() override {
    say("eof_received");
    if (raise_in == "eof_received") throw std::invalid_argument("bad eof");
    return false;
  }
  void connection_lost(std::exception_ptr exc) override {
    say("connection_lost", exc ? exc_text(exc) : std::string("None"));
    lost.set_result();
  }
};

void protocol_method_raises(const std::string& where, const std::function<void(int)>& peer_action) {
  loop::EventLoop lp;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) std::abort();
  peer_action(sv[1]);
  std::shared_ptr<loop::Transport> tr;
  std::shared_ptr<Recorder> pr;
  lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& c) {
    std::string msg = c.message;
    const std::string prefix = "Exception in callback ";
    if (msg.rfind(prefix, 0) == 0) {
      std::string name = msg.substr(prefix.size());
      name = name.substr(0, name.find('('));
      name = name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
      msg = prefix + "..." + name;
    }
    say("  handler:", msg);
    say("  keys:", keys_of(c));
    say("  exception:", exc_text(c.exception));
    if (c.protocol || c.protocol_repr) {
      say("  protocol is ours:", c.protocol == static_cast<loop::BaseProtocol*>(pr.get()),
          "transport is ours:", c.transport == static_cast<loop::BaseTransport*>(tr.get()));
    }
  });
  auto run = [&]() -> loop::Coroutine<void> {
    auto lost = lp.create_future<void>();
    loop::ConnectionOptions o;
    o.sock = sv[0];
    auto factory = [&] {
      auto p = std::make_shared<Recorder>();
      p->raise_in = where;
      p->lost = lost;
      return p;
    };
    auto pair = co_await lp.create_connection(factory, o);
    tr = pair.first;
    pr = pair.second;
    say("created");
    if (where == "connection_made") {
      co_await loop::sleep(0.05);
      say("transport closing:", tr->is_closing());
      tr->close();
    }
    co_await lost;
    say("closing after:", tr->is_closing());
  };
  lp.run_until_complete(run());
  ::close(sv[1]);
  lp.close();
}

}  // namespace

SCENARIO(exception_in_data_received_is_fatal) {
  protocol_method_raises("data_received", [](int b) {
    if (::send(b, "hello", 5, 0) != 5) std::abort();
  });
}

SCENARIO(exception_in_eof_received_is_fatal) {
  protocol_method_raises("eof_received", [](int b) { ::shutdown(b, SHUT_WR); });
}

SCENARIO(exception_in_connection_made_is_a_callback_error) {
  protocol_method_raises("connection_made", [](int b) {
    if (::send(b, "hello", 5, 0) != 5) std::abort();
  });
}

namespace {
loop::Coroutine<int> boom() {
  throw std::invalid_argument("task failed");
  co_return 0;
}
}  // namespace

SCENARIO(task_exception_never_retrieved_reported_when_released) {
  loop::EventLoop lp;
  lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& c) {
    say_context(c);
    auto words = split(c.future ? c.future->repr() : c.future_repr.value_or("?"));
    std::vector<std::string> shown;
    for (std::size_t i = 0; i < words.size() && i < 3; ++i)
      if (words[i].rfind("exception=", 0) != 0) shown.push_back(words[i]);
    say("  future:", join(shown));
  });
  auto t = lp.create_task(boom(), "boomer");
  lp.call_soon([&] { lp.stop(); });
  lp.run_forever();
  say("task done:", t.done());
  say("releasing the task");
  t = loop::Task<int>();
  say("released");
  auto fut = lp.create_future<int>();
  fut.set_exception(std::invalid_argument("future failed"));
  lp.close();
  say("releasing the future of the closed loop");
  fut = loop::Future<int>();
  say("released");
}

SCENARIO(unreferenced_failed_task_reported_in_its_last_step) {
  loop::EventLoop lp;
  lp.set_exception_handler(recording_handler);
  (void)lp.create_task(boom());
  lp.call_soon([] { say("scheduled after the task"); });
  lp.call_soon([&] { lp.stop(); });
  lp.run_forever();
  say("after the run");
  say("after gc");
  lp.close();
}

namespace {
loop::Coroutine<void> wait_forever(loop::EventLoop& lp) {
  auto never = lp.create_future<void>();
  co_await never;
}
}  // namespace

SCENARIO(pending_task_destroyed_report) {
  {
    loop::EventLoop lp;
    lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& c) {
      say("  handler:", c.message);
      say("  keys:", keys_of(c));
      auto words = split(c.task ? c.task->repr() : std::string("?"));
      words.resize(std::min<std::size_t>(words.size(), 3));
      for (auto& w : words) w = w.substr(0, w.find_last_not_of('>') + 1);
      say("  task:", join(words));
    });
    auto t = lp.create_task(wait_forever(lp), "waiter");
    lp.call_soon([&] { lp.stop(); });
    lp.run_forever();
    say("task pending:", !t.done());
    lp.close();
    say("loop closed; releasing the task and the loop");
    t = loop::Task<void>();
  }
  say("released");
}

SCENARIO(retrieved_exceptions_are_not_reported) {
  loop::EventLoop lp;
  lp.set_exception_handler(recording_handler);
  auto t1 = lp.create_task(boom());
  auto t2 = lp.create_task(boom());
  auto t3 = lp.create_task(boom());
  auto awaiter = [&]() -> loop::Coroutine<void> {
    try {
      co_await t3;
    } catch (const std::invalid_argument& e) {
      say("awaiter got", exc_text(e));
    }
  };
  auto t4 = lp.create_task(awaiter());
  auto t5 = lp.create_task(boom());
  lp.run_until_complete(t4);
  say("t1.exception():", exc_text(t1.exception()));
  say("t2.cancel() after it failed:", t2.cancel());
  try {
    (void)t5.result();
  } catch (const std::invalid_argument& e) {
    say("t5.result() raised", exc_text(e));
  }
  say("releasing");
  t1 = {};
  t2 = {};
  t3 = {};
  t4 = {};
  t5 = {};
  say("released (nothing reported)");
  lp.close();
}

// ---- Signals --------------------------------------------------------------------------------

namespace {
void kill_self(int sig) {
  ::kill(::getpid(), sig);
}
bool default_disposition(int sig) {
  struct sigaction sa;
  ::sigaction(sig, nullptr, &sa);
  return sa.sa_handler == SIG_DFL;
}
}  // namespace

SCENARIO(signal_handler_runs_after_callbacks_of_the_next_iteration) {
  loop::EventLoop lp;
  lp.add_signal_handler(SIGUSR1, [] { say("signal handler"); });
  auto d = [] { say("d"); };
  auto c = [&] {
    say("c");
    lp.call_soon(d);
  };
  auto b = [&] {
    say("b");
    lp.call_soon(c);
  };
  lp.call_soon([&] {
    say("a: kill");
    kill_self(SIGUSR1);
    say("a: back from kill");
    lp.call_soon(b);
  });
  lp.call_later(0.1, [&] { lp.stop(); });
  lp.run_forever();
  say("removed:", lp.remove_signal_handler(SIGUSR1));
  lp.close();
}

SCENARIO(signal_handler_removed_by_the_next_callback) {
  loop::EventLoop lp;
  lp.add_signal_handler(SIGUSR1, [] { say("signal handler (must not run once removed)"); });
  auto b = [&] { say("b: remove_signal_handler", lp.remove_signal_handler(SIGUSR1)); };
  lp.call_soon([&] {
    say("a: kill");
    kill_self(SIGUSR1);
    lp.call_soon(b);
  });
  lp.call_later(0.1, [&] { lp.stop(); });
  lp.run_forever();
  say("end");
  lp.close();
}

SCENARIO(signals_run_in_delivery_order) {
  loop::EventLoop lp;
  lp.add_signal_handler(SIGUSR1, [] { say("handler USR1"); });
  lp.add_signal_handler(SIGUSR2, [] { say("handler USR2"); });
  lp.call_soon([] {
    say("kill USR2, USR1, USR2, USR1");
    kill_self(SIGUSR2);
    kill_self(SIGUSR1);
    kill_self(SIGUSR2);
    kill_self(SIGUSR1);
  });
  lp.call_later(0.1, [&] { lp.stop(); });
  lp.run_forever();
  lp.remove_signal_handler(SIGUSR1);
  lp.remove_signal_handler(SIGUSR2);
  lp.close();
}

SCENARIO(remove_signal_handler_return_values_and_replacement) {
  loop::EventLoop lp;
  say("remove never added:", lp.remove_signal_handler(SIGUSR1));
  lp.add_signal_handler(
      SIGUSR1, [](const std::string& s) { say(s); }, std::string("first handler"));
  lp.add_signal_handler(
      SIGUSR1, [](const std::string& s, int n) { say(s, n); }, std::string("second handler"), 2);
  lp.call_soon(kill_self, SIGUSR1);
  lp.call_later(0.05, [&] { lp.stop(); });
  lp.run_forever();
  say("remove added:", lp.remove_signal_handler(SIGUSR1));
  say("disposition default again:", default_disposition(SIGUSR1));
  say("remove again:", lp.remove_signal_handler(SIGUSR1));
  say("remove SIGKILL (never added):", lp.remove_signal_handler(SIGKILL));
  lp.add_signal_handler(SIGUSR2, [] {});
  lp.close();
  say("close resets USR2:", default_disposition(SIGUSR2));
  say("remove after close:", lp.remove_signal_handler(SIGUSR2));
}

SCENARIO(uncatchable_signals_are_refused) {
  loop::EventLoop lp;
  for (auto [name, sig] : {std::pair<const char*, int>{"SIGKILL", SIGKILL}, {"SIGSTOP", SIGSTOP}}) {
    try {
      lp.add_signal_handler(sig, [] {});
      say(name, "accepted");
    } catch (const std::exception& e) {
      // The message only: asyncio raises RuntimeError, libloop std::invalid_argument (the
      // contract of issue 3; README, "departs from asyncio on purpose").
      say(name, "refused:", e.what());
    }
  }
  lp.close();
}

SCENARIO(invalid_signal_numbers_are_refused) {
  loop::EventLoop lp;
  for (int sig : {0, -1, NSIG, NSIG + 5}) {
    try {
      lp.add_signal_handler(sig, [] {});
      say("add", "accepted");
    } catch (const std::exception& e) {
      say("add: refused with", diff::exception_name(e));
    }
    try {
      lp.remove_signal_handler(sig);
      say("remove", "accepted");
    } catch (const std::exception& e) {
      say("remove: refused with", diff::exception_name(e));
    }
  }
  lp.close();
}

SCENARIO(exception_in_signal_callback) {
  loop::EventLoop lp;
  lp.set_exception_handler(recording_handler);
  lp.add_signal_handler(
      SIGUSR2, loop::named("sig_fail", [] { throw std::runtime_error("signal callback failed"); }));
  lp.call_soon(kill_self, SIGUSR2);
  lp.call_later(0.05, [&] { lp.stop(); });
  lp.run_forever();
  say("after");
  lp.close();
}

// ---- The executor and call_soon_threadsafe ---------------------------------------------------

SCENARIO(run_in_executor_results_and_exceptions) {
  loop::EventLoop lp;
  auto run = [&]() -> loop::Coroutine<void> {
    auto product = lp.run_in_executor(
        nullptr, [](int a, int b) { return a * b; }, 6, 7);
    say("result:", co_await product);
    try {
      auto failing =
          lp.run_in_executor(nullptr, []() -> int { throw std::invalid_argument("in worker"); });
      co_await failing;
    } catch (const std::exception& e) {
      say("raised:", exc_text(e));
    }
    auto nothing = lp.run_in_executor(nullptr, [] {});
    co_await nothing;
    say("no result:", nullptr);
    loop::ThreadPoolExecutor ex(1);
    auto own = lp.run_in_executor(
        &ex, [](int a, int b) { return a * b; }, 2, 3);
    say("own executor:", co_await own);
  };
  lp.run_until_complete(run());
  lp.close();
}

SCENARIO(run_in_executor_completions_with_one_worker) {
  loop::EventLoop lp;
  lp.set_default_executor(std::make_unique<loop::ThreadPoolExecutor>(1));
  Event start, gate, release;
  std::vector<loop::Future<int>> futs;
  futs.push_back(lp.run_in_executor(nullptr, [&] {
    start.wait(5);  // nothing completes before the loop runs a()
    return 0;
  }));
  for (int n : {1, 2, 3}) futs.push_back(lp.run_in_executor(nullptr, [n] { return n * 10; }));
  auto f4 = lp.run_in_executor(nullptr, [&] {
    gate.set();
    release.wait(5);
    return 4;
  });
  for (int n = 0; n < 4; ++n)
    futs[static_cast<std::size_t>(n)].add_done_callback(
        [n](loop::Future<int> f) { say("done-callback", n, "result", f.result()); });
  auto c = [&] {
    say("c: releases the last job");
    release.set();
  };
  auto b = [&] {
    say("b");
    lp.call_soon(c);
  };
  lp.call_soon([&] {
    say("a: starts the worker, waits until it is on the last job");
    start.set();
    gate.wait(5);
    lp.call_soon(b);
  });
  say("last job:", lp.run_until_complete(f4));
  lp.close();
}

SCENARIO(cancelled_executor_future_ignores_the_late_result) {
  loop::EventLoop lp;
  lp.set_default_executor(std::make_unique<loop::ThreadPoolExecutor>(1));
  lp.set_exception_handler(recording_handler);
  Event started, go;
  std::atomic<bool> ran{false};
  auto f1 = lp.run_in_executor(nullptr, [&] {
    started.set();
    go.wait(5);
    ran = true;
    return 1;
  });
  auto f2 = lp.run_in_executor(nullptr, [] { return 2; });
  lp.call_soon([&] {
    started.wait(5);  // the job is running: too late to stop it
    say("cancel:", f1.cancel());
    go.set();
  });
  say("second job:", lp.run_until_complete(f2));
  say("first cancelled:", f1.cancelled(), "its job ran:", ran.load());
  lp.close();
}

SCENARIO(call_soon_threadsafe_from_a_thread) {
  loop::EventLoop lp;
  Event posted, running;
  std::thread t1;
  std::thread t2([&] {
    running.wait(5);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    lp.call_soon_threadsafe([&] {
      say("woken by a thread");
      lp.stop();
    });
  });
  lp.call_soon([&] {
    say("a");
    lp.call_soon([] { say("call_soon before the thread posts"); });
    t1 = std::thread([&] {
      lp.call_soon_threadsafe([] { say("from thread 1"); });
      lp.call_soon_threadsafe([] { say("from thread 2"); });
      posted.set();
    });
    posted.wait(5);
    lp.call_soon([&] {
      say("call_soon after the thread posted");
      lp.call_soon([&] {  // not a timer: a slow first iteration would move it
        say("idle");
        running.set();
      });
    });
  });
  lp.call_soon([] { say("b (same iteration as a)"); });
  lp.run_forever();
  t1.join();
  t2.join();
  lp.close();
}

// ---- Debug mode -----------------------------------------------------------------------------

SCENARIO(debug_mode_refuses_call_soon_from_another_thread) {
  ::unsetenv("LOOP_DEBUG");
  loop::EventLoop lp;
  say("debug at first:", lp.get_debug());
  lp.set_debug(true);
  say("debug set:", lp.get_debug());
  std::vector<std::string> outcomes;
  std::thread th([&] { lp.call_soon([] { say("queued by a thread before the run"); }); });
  th.join();
  std::thread th2;
  auto other_thread = [&] {
    auto attempt = [&](const char* name, const std::function<void()>& fn) {
      try {
        fn();
        outcomes.push_back(std::string(name) + ": accepted");
      } catch (const std::exception& e) {
        outcomes.push_back(std::string(name) + ": " + exc_text(e));
      }
    };
    attempt("call_soon", [&] { lp.call_soon([] {}); });
    attempt("call_later", [&] { lp.call_later(1, [] {}); });
    attempt("call_at", [&] { lp.call_at(lp.time() + 1, [] {}); });
    lp.call_soon_threadsafe([&] {
      for (auto& o : outcomes) say(o);
      say("call_soon_threadsafe: accepted");
      lp.stop();
    });
  };
  lp.call_soon([&] { th2 = std::thread(other_thread); });
  lp.run_forever();
  th2.join();
  lp.set_debug(false);
  say("debug unset:", lp.get_debug());
  lp.close();
}

SCENARIO(debug_mode_contexts_carry_source_traceback) {
  loop::EventLoop lp;
  lp.set_debug(true);
  lp.set_exception_handler([](loop::EventLoop&, const loop::ExceptionContext& c) {
    say("  handler:", c.message);
    say("  keys:", keys_of(c));
  });
  lp.call_soon(loop::named("fail", &fail));
  lp.call_later(0.01, loop::named("fail", &fail));
  (void)lp.create_task(boom());
  lp.call_later(0.05, [&] { lp.stop(); });
  lp.run_forever();
  auto fut = lp.create_future<int>();
  fut.set_exception(std::invalid_argument("future failed"));
  say("releasing the future");
  fut = loop::Future<int>();
  say("released");
  lp.close();
}

// ---- run_forever / run_until_complete errors ------------------------------------------------

SCENARIO(nested_run_and_close_are_refused) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  bool started = false;
  auto never = [&]() -> loop::Coroutine<int> {
    started = true;
    co_return 1;
  };
  lp.call_soon([&] {
    try_("run_forever", [&] { lp.run_forever(); });
    try_("run_until_complete(future)", [&] { lp.run_until_complete(fut); });
    try_("close", [&] { lp.close(); });
    try {
      lp.run_until_complete(never());
    } catch (const std::exception& e) {
      say("run_until_complete(coroutine)", exc_text(e));
    }
    fut.set_result(1);
  });
  say("result:", lp.run_until_complete(fut));
  lp.call_soon([&] { lp.stop(); });
  lp.run_forever();
  say("refused coroutine started:", started);
  say("running:", lp.is_running());
  lp.close();
}

SCENARIO(stopped_before_future_completed) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  lp.call_soon([&] { lp.stop(); });
  try {
    lp.run_until_complete(fut);
  } catch (const std::exception& e) {
    say("future:", exc_text(e));
  }
  say("future done:", fut.done());
  lp.call_soon([fut] { fut.set_result(5); });
  say("second run:", lp.run_until_complete(fut));
  auto stops = [&]() -> loop::Coroutine<int> {
    say("step 1, stops the loop");
    lp.stop();
    co_await loop::sleep(0);
    say("step 2");
    co_return 7;
  };
  try {
    lp.run_until_complete(stops());
  } catch (const std::exception& e) {
    say("coroutine:", exc_text(e));
  }
  say("pending tasks:", loop::all_tasks(lp).size());
  lp.call_soon([&] { lp.stop(); });
  lp.run_forever();
  say("pending tasks:", loop::all_tasks(lp).size());
  lp.close();
}

SCENARIO(run_until_complete_raises_what_the_future_holds) {
  loop::EventLoop lp;
  auto f1 = lp.create_future<int>();
  lp.call_soon([f1] { f1.set_exception(std::invalid_argument("bad value")); });
  try {
    lp.run_until_complete(f1);
  } catch (const std::exception& e) {
    say("failed future:", exc_text(e));
  }
  try {
    lp.run_until_complete(f1);
  } catch (const std::exception& e) {
    say("again:", exc_text(e));
  }
  auto f2 = lp.create_future<int>();
  lp.call_soon([f2] { f2.cancel(); });
  try {
    lp.run_until_complete(f2);
  } catch (const std::exception& e) {
    say("cancelled future:", diff::exception_name(e));
  }
  auto raises = []() -> loop::Coroutine<int> {
    co_await loop::sleep(0);
    throw std::invalid_argument("from coroutine");
  };
  try {
    lp.run_until_complete(raises());
  } catch (const std::exception& e) {
    say("coroutine:", exc_text(e));
  }
  lp.close();
}

SCENARIO(closed_loop_refuses_work) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  lp.close();
  auto coro = []() -> loop::Coroutine<int> { co_return 1; };
  try_("run_forever", [&] { lp.run_forever(); });
  try_("run_until_complete(future)", [&] { lp.run_until_complete(fut); });
  try_("run_until_complete(coroutine)", [&] { lp.run_until_complete(coro()); });
  try_("call_soon", [&] { lp.call_soon([] {}); });
  try_("call_later", [&] { lp.call_later(1, [] {}); });
  try_("call_soon_threadsafe", [&] { lp.call_soon_threadsafe([] {}); });
  try_("create_task", [&] { lp.create_task(coro()); });
  try_("run_in_executor", [&] { lp.run_in_executor(nullptr, [] {}); });
  try_("add_signal_handler", [&] { lp.add_signal_handler(SIGUSR1, [] {}); });
  try_("create_future", [&] { (void)lp.create_future<int>(); });
  try_("set_result without callbacks", [&] { fut.set_result(1); });
  auto f2 = lp.create_future<int>();
  f2.add_done_callback([](loop::Future<int>) {});
  try_("set_result with a callback", [&] { f2.set_result(1); });
  say("f2 done:", f2.done());
  try_("close again", [&] { lp.close(); });
}

SCENARIO(another_loop_running_in_the_thread) {
  loop::EventLoop lp1;
  loop::EventLoop lp2;
  auto f2 = lp2.create_future<std::string>();
  lp1.call_soon([&] {
    try {
      lp2.run_forever();
    } catch (const std::exception& e) {
      say("lp2.run_forever:", exc_text(e));
    }
    try {
      lp2.run_until_complete(f2);
    } catch (const std::exception& e) {
      say("lp2.run_until_complete:", exc_text(e));
    }
  });
  lp1.call_soon([&] { lp1.stop(); });
  lp1.run_forever();
  try {
    lp1.run_until_complete(f2);
  } catch (const std::exception& e) {
    say("lp1.run_until_complete(future of lp2):", exc_text(e));
  }
  lp2.call_soon([f2] { f2.set_result("two"); });
  say("lp2 still works:", lp2.run_until_complete(f2));
  lp1.close();
  lp2.close();
}

// ---- Async generators -----------------------------------------------------------------------

namespace {

loop::AsyncGenerator<int> ticker(std::string name) {
  bool exiting = false;
  try {
    for (int i = 0;; ++i) co_yield i;
  } catch (const loop::GeneratorExit&) {
    exiting = true;
  }
  if (exiting) {
    say(name, "GeneratorExit: cleanup starts");
    co_await loop::sleep(0);
    say(name, "cleanup ends");
    throw loop::GeneratorExit{};
  }
}

loop::AsyncGenerator<int> finite() {
  co_yield 1;
  co_yield 2;
}

loop::AsyncGenerator<int> bad_cleanup() {
  bool exiting = false;
  try {
    co_yield 1;
  } catch (const loop::GeneratorExit&) {
    exiting = true;
  }
  if (exiting) {
    say("bad: cleanup raises");
    throw std::invalid_argument("cleanup failed");
  }
}

}  // namespace

SCENARIO(shutdown_asyncgens_closes_started_generators) {
  loop::EventLoop lp;
  auto g_open = ticker("open");
  auto g_never = ticker("never started");
  auto g_done = finite();
  auto run = [&]() -> loop::Coroutine<void> {
    auto v = co_await g_open.next();
    say("open yields", *v);
    v = co_await g_open.next();
    say("open yields", *v);
    while (auto f = co_await g_done.next()) say("finite yields", *f);
  };
  lp.run_until_complete(run());
  say("shutdown_asyncgens");
  lp.run_until_complete(lp.shutdown_asyncgens());
  say("shutdown done");
  auto after = [&]() -> loop::Coroutine<void> {
    auto v = co_await g_open.next();
    if (v)
      say("open yields", *v);
    else
      say("open: exhausted");
  };
  lp.run_until_complete(after());
  say("second shutdown_asyncgens");
  lp.run_until_complete(lp.shutdown_asyncgens());
  say("second done");
  g_never = {};
  lp.close();
}

SCENARIO(shutdown_asyncgens_reports_cleanup_errors) {
  loop::EventLoop lp;
  auto gen = bad_cleanup();
  lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& c) {
    say("  handler:", c.message.substr(0, c.message.find(" <")));
    say("  keys:", keys_of(c));
    say("  exception:", exc_text(c.exception));
    say("  asyncgen is ours:", c.asyncgen == gen.repr());
  });
  auto run = [&]() -> loop::Coroutine<void> {
    auto v = co_await gen.next();
    say("bad yields", *v);
  };
  lp.run_until_complete(run());
  lp.run_until_complete(lp.shutdown_asyncgens());
  say("shutdown done");
  lp.close();
}

SCENARIO(dropped_open_generator_is_closed_by_the_loop) {
  loop::EventLoop lp;
  auto run = []() -> loop::Coroutine<void> {
    {
      auto g = ticker("dropped");
      auto v = co_await g.next();
      say("dropped yields", *v);
      say("dropping it");
    }
    say("dropped");
    co_await loop::sleep(0.01);
    say("main ends");
  };
  lp.run_until_complete(run());
  lp.run_until_complete(lp.shutdown_asyncgens());
  lp.close();
}

SCENARIO(dropped_generator_cleanup_error_is_the_closing_task_exception) {
  loop::EventLoop lp;
  lp.set_exception_handler(recording_handler);
  auto run = [&]() -> loop::Coroutine<void> {
    {
      auto g = bad_cleanup();
      auto v = co_await g.next();
      say("bad yields", *v);
    }
    say("dropped; tasks:", loop::all_tasks(lp).size());
    lp.call_soon([] { say("callback scheduled after the drop"); });
    for (int i = 0; i < 3; ++i) {
      co_await loop::sleep(0);
      say("main step", i);
    }
  };
  lp.run_until_complete(run());
  lp.run_until_complete(lp.shutdown_asyncgens());
  say("shutdown done");
  lp.close();
}

SCENARIO(generator_dropped_as_a_run_ends_is_closed_in_the_next_run) {
  loop::EventLoop lp;
  auto run = []() -> loop::Coroutine<void> {
    auto g = ticker("last");
    auto v = co_await g.next();
    say("last yields", *v);
    say("main ends, dropping it");
  };
  lp.run_until_complete(run());
  say("run done");
  lp.run_until_complete(lp.shutdown_asyncgens());
  say("shutdown done");
  lp.close();
}

SCENARIO(generator_dropped_after_close_is_not_closed) {
  loop::EventLoop lp;
  auto g = ticker("late");
  auto run = [&]() -> loop::Coroutine<void> {
    auto v = co_await g.next();
    say("late yields", *v);
  };
  lp.run_until_complete(run());
  lp.close();
  say("loop closed");
  g = {};
  say("dropped");
}

SCENARIO(dropped_generator_is_not_closed_again_by_shutdown_asyncgens) {
  loop::EventLoop lp;
  auto run = [&]() -> loop::Coroutine<void> {
    auto dropped = ticker("dropped");
    auto kept = ticker("kept");
    auto v = co_await dropped.next();
    say("dropped yields", *v);
    v = co_await kept.next();
    say("kept yields", *v);
    dropped = {};
    say("shutdown_asyncgens");
    co_await lp.shutdown_asyncgens();
    say("shutdown done");
    co_await loop::sleep(0.01);
    say("main ends");
  };
  lp.run_until_complete(run());
  lp.close();
}

SCENARIO(generator_dropped_on_another_thread_is_closed_on_the_loop) {
  loop::EventLoop lp;
  auto run = [&]() -> loop::Coroutine<void> {
    auto holder = std::make_shared<loop::AsyncGenerator<int>>(ticker("threaded"));
    auto v = co_await holder->next();
    say("threaded yields", *v);
    auto drop = lp.run_in_executor(nullptr, [holder] {
      say("worker drops it");
      *holder = {};
    });
    holder.reset();
    co_await drop;
    // (Whether the worker's completion or the cleanup's second step comes first is a race.)
    co_await loop::sleep(0.01);
    say("main ends");
  };
  lp.run_until_complete(run());
  lp.close();
}

// ---- The task factory and the clock ---------------------------------------------------------

namespace {
loop::Coroutine<int> child(int n) {
  co_await loop::sleep(0);
  co_return n;
}
}  // namespace

SCENARIO(task_factory_is_used_for_every_task) {
  loop::EventLoop lp;
  say("no factory at first:", !lp.get_task_factory());
  int made = 0;
  lp.set_task_factory([&](loop::EventLoop& l, loop::AnyCoroutine coro) {
    ++made;
    say("  factory call", made, "same loop", &l == &lp);
    return loop::make_task(l, std::move(coro));
  });
  say("factory set:", static_cast<bool>(lp.get_task_factory()));
  say("create_task");
  auto t = lp.create_task(child(1), "one");
  say("name kept:", t.get_name());
  auto run = [&]() -> loop::Coroutine<int> {
    say("await a coroutine");
    co_await child(2);
    say("gather");
    auto g = loop::gather(child(3), child(4));
    co_await std::move(g);
    say("wait_for");
    auto w = loop::wait_for(child(5), 1);
    co_await std::move(w);
    say("shield");
    auto s = loop::shield(loop::ensure_future(child(6)));
    co_await s;
    co_return co_await t;
  };
  say("run_until_complete");
  say("result:", lp.run_until_complete(run()));
  lp.set_task_factory(nullptr);
  say("reset:", !lp.get_task_factory());
  say("result:", lp.run_until_complete(child(7)));
  say("factory calls:", made);
  lp.close();
}

SCENARIO(time_is_the_monotonic_clock) {
  loop::EventLoop lp;
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  double mono = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  say("time() is the monotonic clock:", std::fabs(lp.time() - mono) < 0.05);
  double t0 = lp.time();
  auto th = lp.call_later(0.05, [] {});
  say("call_later when() is time() + delay:", std::fabs(th.when() - (t0 + 0.05)) < 0.01);
  double when = lp.time() + 0.03;
  auto ta = lp.call_at(when, [] {});
  say("call_at when() is exact:", ta.when() == when);
  loop::TimerHandle tb;
  tb = lp.call_later(0.02, [&] {
    say("timer ran no earlier than when():", lp.time() >= tb.when());
    lp.stop();
  });
  lp.run_forever();
  double t1 = lp.time();
  say("time advanced:", t1 > t0, "by at least 0.02:", t1 - t0 >= 0.02);
  th.cancel();
  ta.cancel();
  lp.close();
}

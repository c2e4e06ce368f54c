// get_running_loop / get_event_loop / set_event_loop / new_event_loop (CPython test_events.py
// PolicyTests and test_get_running_loop / test_get_event_loop_returns_running_loop).
#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <string>
#include <thread>

TEST_CASE("test_get_running_loop") {
  CHECK_THROWS_WITH(loop::get_running_loop(), "no running event loop");
  loop::EventLoop lp;
  loop::EventLoop* seen = nullptr;
  lp.call_soon([&] {
    seen = &loop::get_running_loop();
    lp.stop();
  });
  lp.run_forever();
  CHECK(seen == &lp);
  CHECK_THROWS(loop::get_running_loop());
}

TEST_CASE("test_get_event_loop_returns_running_loop") {
  loop::EventLoop other;
  loop::set_event_loop(&other);
  loop::EventLoop lp;
  loop::EventLoop* seen = nullptr;
  lp.call_soon([&] {
    seen = &loop::get_event_loop();
    lp.stop();
  });
  lp.run_forever();
  CHECK(seen == &lp);
  CHECK(&loop::get_event_loop() == &other);
  loop::set_event_loop(nullptr);
}

TEST_CASE("test_set_event_loop_and_main_thread_default") {
  auto a = loop::new_event_loop();
  auto b = loop::new_event_loop();
  CHECK(a.get() != b.get());
  loop::set_event_loop(a.get());
  CHECK(&loop::get_event_loop() == a.get());
  loop::set_event_loop(nullptr);
  // The main thread gets a loop made on first use; the same one after that.
  loop::EventLoop& implicit = loop::get_event_loop();
  CHECK(&loop::get_event_loop() == &implicit);
  CHECK(&implicit != a.get());
  loop::set_event_loop(nullptr);
}

TEST_CASE("test_get_event_loop_in_other_thread_raises") {
  std::string error;
  loop::EventLoop* set_there = nullptr;
  std::thread t([&] {
    try {
      loop::get_event_loop();
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
    loop::EventLoop lp;
    loop::set_event_loop(&lp);
    set_there = &loop::get_event_loop();
    CHECK(set_there == &lp);
    loop::set_event_loop(nullptr);
  });
  t.join();
  CHECK(error == "There is no current event loop in this thread.");
  CHECK(set_there != nullptr);
}

TEST_CASE("test_run_loop_inside_running_loop_raises") {
  loop::EventLoop outer;
  loop::EventLoop inner;
  std::string error;
  outer.call_soon([&] {
    try {
      inner.run_forever();
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
    outer.stop();
  });
  outer.run_forever();
  CHECK(error == "Cannot run the event loop while another loop is running");
}

// The exception handler API (CPython test_base_events.py: test_default_exc_handler_callback,
// test_set_exc_handler_custom, test_set_exc_handler_broken, test_default_exc_handler_coro).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <loop/loop.hpp>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "stderr_capture.hpp"

using test::StderrCapture;

namespace {
void failing_callback() {
  throw std::runtime_error("callback failed");
}
}  // namespace

TEST_CASE("test_set_exc_handler_custom_callback_context") {
  loop::EventLoop lp;
  std::vector<loop::ExceptionContext> seen;
  lp.set_exception_handler([&](loop::EventLoop& l, const loop::ExceptionContext& c) {
    CHECK(&l == &lp);
    seen.push_back(c);
  });
  CHECK(lp.get_exception_handler());
  loop::Handle h = lp.call_soon(loop::named("failing_callback", &failing_callback));
  int after = 0;
  lp.call_soon([&] { ++after; });
  lp.stop();
  lp.run_forever();
  CHECK(after == 1);  // the loop survived
  REQUIRE(seen.size() == 1);
  const auto& c = seen[0];
  CHECK(c.message == "Exception in callback failing_callback()");
  REQUIRE(c.exception);
  CHECK_THROWS_WITH(std::rethrow_exception(c.exception), "callback failed");
  REQUIRE(c.handle);
  CHECK(c.handle->id() == h.id());
  nlohmann::json j = c.to_json();
  CHECK(j["message"] == "Exception in callback failing_callback()");
  CHECK(j["exception"]["type"] == "std::runtime_error");
  CHECK(j["exception"]["what"] == "callback failed");
  CHECK(j["handle"] == "<Handle failing_callback()>");
  CHECK_FALSE(j.contains("future"));
  CHECK_FALSE(j.contains("transport"));
  CHECK_FALSE(j.contains("protocol"));
  CHECK_FALSE(j.contains("socket"));
}

TEST_CASE("test_exc_handler_context_keys_future_socket_to_json") {
  loop::EventLoop lp;
  auto f = lp.create_future<int>();
  loop::ExceptionContext c;
  c.message = "custom";
  c.future = f.state();
  c.socket = 7;
  nlohmann::json j = c.to_json();
  CHECK(j["message"] == "custom");
  CHECK(j["future"] == "<Future pending>");
  CHECK(j["socket"] == 7);
  CHECK_FALSE(j.contains("exception"));
  CHECK_FALSE(j.contains("handle"));
}

TEST_CASE("test_set_exc_handler_broken") {
  // A handler that throws: the default handler reports "Unhandled error in exception handler"
  // with the original context nested, and nothing escapes the loop.
  loop::EventLoop lp;
  lp.set_exception_handler([](loop::EventLoop&, const loop::ExceptionContext&) {
    throw std::logic_error("handler is broken");
  });
  StderrCapture cap;
  lp.call_soon(loop::named("failing_callback", &failing_callback));
  int after = 0;
  lp.call_soon([&] { ++after; });
  lp.stop();
  REQUIRE_NOTHROW(lp.run_forever());
  std::string err = cap.text();
  CHECK(after == 1);
  CHECK(err.find("Unhandled error in exception handler") != std::string::npos);
  CHECK(err.find("handler is broken") != std::string::npos);
  CHECK(err.find("Exception in callback failing_callback()") != std::string::npos);

  // The same thing through the API, checking the nested context itself.
  std::vector<loop::ExceptionContext> outer;
  loop::ExceptionContext original;
  original.message = "original";
  loop::ExceptionContext failed;
  failed.message = "Unhandled error in exception handler";
  failed.context = std::make_shared<loop::ExceptionContext>(original);
  CHECK(failed.to_json()["context"]["message"] == "original");
}

TEST_CASE("test_default_exc_handler_callback_output") {
  loop::EventLoop lp;
  CHECK_FALSE(lp.get_exception_handler());
  StderrCapture cap;
  lp.call_soon(loop::named("failing_callback", &failing_callback));
  lp.stop();
  lp.run_forever();
  std::string err = cap.text();
  // asyncio logs: the message, then "key: value" per other key, then the exception.
  CHECK(err.find("Exception in callback failing_callback()\n") != std::string::npos);
  CHECK(err.find("handle: <Handle failing_callback()>") != std::string::npos);
  CHECK(err.find("std::runtime_error: callback failed") != std::string::npos);
}

TEST_CASE("test_call_exception_handler_default_message") {
  loop::ExceptionContext c;
  CHECK(c.format().rfind("Unhandled exception in event loop", 0) == 0);
  c.message = "m";
  c.exception = std::make_exception_ptr(std::invalid_argument("x"));
  CHECK(c.format() == "m\nstd::invalid_argument: x");
}

namespace {
struct NamedProtocol : loop::Protocol {};
struct NamedTransport : loop::BaseTransport {
  std::any get_extra_info(std::string_view name, std::any dflt = {}) const override {
    if (name == "socket") return 7;
    if (name == "peername") return loop::SocketAddress::from_ip("127.0.0.1", 5000);
    return dflt;
  }
  bool is_closing() const override { return false; }
  void close() override {}
  void set_protocol(std::shared_ptr<loop::BaseProtocol>) override {}
  std::shared_ptr<loop::BaseProtocol> get_protocol() const override { return nullptr; }
};
}  // namespace

TEST_CASE("test_context_names_its_protocol_and_transport") {
  // asyncio prints their reprs; "protocol: protocol" said nothing.
  NamedProtocol p;
  NamedTransport t;
  loop::ExceptionContext c;
  c.message = "Error on transport creation for incoming connection";
  c.protocol = &p;
  c.transport = &t;
  std::string text = c.format();
  CHECK_THAT(text, Catch::Contains("protocol: <") && Catch::Contains("NamedProtocol object at 0x"));
  CHECK_THAT(text, Catch::Contains("NamedTransport fd=7 peer=127.0.0.1:5000>"));
}

TEST_CASE("test_kept_context_describes_objects_that_are_gone") {
  // A handler may keep the context; the transport it names may be freed by then. The loop
  // gives handlers the descriptions made when it reported, and to_json/format print those.
  loop::EventLoop lp;
  std::vector<loop::ExceptionContext> kept;
  lp.set_exception_handler(
      [&](loop::EventLoop&, const loop::ExceptionContext& c) { kept.push_back(c); });
  auto p = std::make_unique<NamedProtocol>();
  auto t = std::make_unique<NamedTransport>();
  loop::ExceptionContext c;
  c.message = "Fatal error on transport";
  c.protocol = p.get();
  c.transport = t.get();
  lp.call_exception_handler(c);
  p.reset();
  t.reset();  // under ASan, reading it now would be reported
  REQUIRE(kept.size() == 1);
  REQUIRE(kept[0].transport_repr.has_value());
  CHECK_THAT(kept[0].format(), Catch::Contains("NamedTransport fd=7 peer=127.0.0.1:5000>") &&
                                   Catch::Contains("NamedProtocol object at 0x"));
  CHECK(kept[0].to_json()["transport"] == *kept[0].transport_repr);
}

TEST_CASE("test_set_exc_handler_none_restores_default") {
  loop::EventLoop lp;
  int calls = 0;
  lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext&) { ++calls; });
  loop::ExceptionContext one;
  one.message = "one";
  lp.call_exception_handler(one);
  lp.set_exception_handler(nullptr);
  StderrCapture cap;
  loop::ExceptionContext two;
  two.message = "two";
  lp.call_exception_handler(two);
  CHECK(calls == 1);
  CHECK(cap.text().find("two") != std::string::npos);
}

TEST_CASE("test_default_exc_handler_coro_task_exception_never_retrieved") {
  loop::EventLoop lp;
  std::vector<nlohmann::json> seen;
  lp.set_exception_handler(
      [&](loop::EventLoop&, const loop::ExceptionContext& c) { seen.push_back(c.to_json()); });
  auto boom = []() -> loop::Coroutine<int> {
    throw std::runtime_error("task failed");
    co_return 0;
  };
  (void)lp.create_task(boom(), "boomer");  // nobody keeps or awaits it
  lp.stop();
  lp.run_forever();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0]["message"] == "Task exception was never retrieved");
  CHECK(seen[0]["exception"]["what"] == "task failed");
  CHECK(seen[0]["future"] ==
        "<Task finished name='boomer' exception=std::runtime_error: task failed>");
}

TEST_CASE("test_cancel_of_a_failed_task_silences_never_retrieved") {
  // asyncio's Task.cancel() sets _log_traceback = False before it sees the task is done.
  loop::EventLoop lp;
  std::vector<nlohmann::json> seen;
  lp.set_exception_handler(
      [&](loop::EventLoop&, const loop::ExceptionContext& c) { seen.push_back(c.to_json()); });
  auto boom = []() -> loop::Coroutine<int> {
    throw std::runtime_error("task failed");
    co_return 0;
  };
  {
    auto t = lp.create_task(boom());
    lp.stop();
    lp.run_forever();
    CHECK(t.done());
    CHECK_FALSE(t.cancel());
  }
  CHECK(seen.empty());
}

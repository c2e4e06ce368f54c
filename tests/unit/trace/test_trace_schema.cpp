// The trace schema (docs/trace.schema.json, docs/trace.md) checked against real traces of a
// running loop, in both sinks; and the validator shown to reject records that break it.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <loop/loop.hpp>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "json_schema.hpp"

namespace {

loop_test::JsonSchema load_schema() {
  std::ifstream in(std::string(LOOP_SOURCE_DIR) + "/docs/trace.schema.json");
  REQUIRE(in.good());
  return loop_test::JsonSchema(nlohmann::json::parse(in));
}

// A temporary file removed at the end of the test.
struct TempFile {
  std::string path;
  TempFile() {
    char tmpl[] = "/tmp/libloop-trace-XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = tmpl;
  }
  ~TempFile() { ::unlink(path.c_str()); }
  std::FILE* open_for_writing() const { return std::fopen(path.c_str(), "w"); }
  std::string read() const {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
};

// Sends every record to each of its sinks (to compare the two formats on one run).
struct TeeTracer : loop::Tracer {
  std::vector<std::shared_ptr<loop::Tracer>> sinks;
  std::vector<nlohmann::json> records;
  void record(const nlohmann::json& rec) override {
    records.push_back(rec);
    for (auto& s : sinks) s->record(rec);
  }
  void flush() override {
    for (auto& s : sinks) s->flush();
  }
  void finish() override {
    for (auto& s : sinks) s->finish();
  }
};

// The workload the brief names: call_soon, call_later, a cancelled timer, a task awaiting a
// future, a callback that throws.
int run_workload(loop::EventLoop& lp, int& handled) {
  lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext&) { ++handled; });
  lp.call_soon(loop::named("first", [] {}));
  lp.call_later(0.01, loop::named("later", [] {}));
  auto never = lp.call_later(5, loop::named("never", [] {}));
  never.cancel();
  lp.call_soon(loop::named("thrower", [] { throw std::runtime_error("boom"); }));
  auto fut = lp.create_future<int>();
  lp.call_later(0.02, loop::named("resolve", [fut] { fut.set_result(42); }));
  auto waiter = [](loop::Future<int> f) -> loop::Coroutine<int> { co_return co_await f + 1; };
  int result = lp.run_until_complete(waiter(fut));
  lp.close();
  return result;
}

}  // namespace

TEST_CASE("trace schema: every JSON Lines record of a real run validates, with sane values") {
  auto schema = load_schema();
  TempFile file;
  int handled = 0;
  double resolution = 0;
  {
    loop::EventLoop lp;
    resolution = lp.clock().resolution();
    lp.set_tracer(loop::make_jsonl_tracer(file.open_for_writing(), true));
    REQUIRE(run_workload(lp, handled) == 43);
  }  // the loop's destructor finishes the tracer
  REQUIRE(handled == 1);

  std::istringstream lines(file.read());
  std::string line;
  std::vector<nlohmann::json> recs;
  while (std::getline(lines, line)) {
    auto rec = nlohmann::json::parse(line);
    auto errs = schema.errors(rec);
    INFO(line);
    INFO((errs.empty() ? std::string() : errs[0]));
    REQUIRE(errs.empty());
    recs.push_back(rec);
  }
  REQUIRE(recs.size() > 10);

  std::map<std::string, int> kinds;
  std::set<std::string> callback_names, callback_kinds;
  double last_ts = 0;
  for (auto& r : recs) {
    ++kinds[r["ev"]];
    REQUIRE(r["ts"].get<double>() >= last_ts);  // one steady clock: never backwards
    last_ts = r["ts"];
    if (r["ev"] == "callback") {
      callback_names.insert(r["name"].get<std::string>());
      callback_kinds.insert(r["kind"].get<std::string>());
      REQUIRE(r["duration"].get<double>() >= 0);
      double scheduled = r["scheduled"], started = r["started"];
      if (r["kind"] == "timer")
        REQUIRE(started >= scheduled - resolution);  // due within the clock's resolution
      else
        REQUIRE(started >= scheduled);
      REQUIRE(r["ts"].get<double>() >= started);
    }
  }
  // A callback queued while tracing reports when it was queued (kept aside from the handle:
  // EventLoop::trace_scheduled_), a timer its deadline.
  std::map<std::uint64_t, double> deadlines;
  int checked = 0;
  for (auto& r : recs) {
    if (r["ev"] == "timer_scheduled") deadlines[r["id"]] = r["when"];
    if (r["ev"] != "callback") continue;
    if (r["name"] == "first") {
      CHECK(r["scheduled"].get<double>() > 0);
      ++checked;
    } else if (r["name"] == "later") {
      CHECK(r["scheduled"].get<double>() == deadlines.at(r["id"]));
      ++checked;
    }
  }
  CHECK(checked == 2);
  for (const char* k : {"loop_start", "loop_stop", "loop_close", "iteration", "callback",
                        "timer_scheduled", "timer_cancelled", "exception"}) {
    INFO(k);
    REQUIRE(kinds[k] >= 1);
  }
  REQUIRE(kinds["loop_start"] == kinds["loop_stop"]);
  REQUIRE(callback_names.count("first"));
  REQUIRE(callback_names.count("later"));
  REQUIRE(callback_names.count("thrower"));
  REQUIRE(callback_names.count("resolve"));
  REQUIRE_FALSE(callback_names.count("never"));  // cancelled: never ran
  REQUIRE(callback_kinds.count("soon"));
  REQUIRE(callback_kinds.count("timer"));
  REQUIRE(callback_kinds.count("task"));

  // iteration.ready counts the callbacks taken for that batch: the callback records that follow
  // (until the next iteration) are at most that many (cancelled ones are skipped silently).
  int total_ready = 0, total_callbacks = 0, in_batch = -1, batch_ready = 0, busy = 0;
  for (auto& r : recs) {
    if (r["ev"] == "iteration") {
      if (in_batch >= 0) REQUIRE(in_batch <= batch_ready);
      batch_ready = r["ready"];
      total_ready += batch_ready;
      if (batch_ready > 0) ++busy;
      in_batch = 0;
      if (r["timeout"].is_number()) REQUIRE(r["timeout"].get<double>() >= 0);
    } else if (r["ev"] == "callback") {
      REQUIRE(in_batch >= 0);  // a callback runs inside an iteration
      ++in_batch;
      ++total_callbacks;
    }
  }
  REQUIRE(in_batch <= batch_ready);
  REQUIRE(busy >= 1);
  REQUIRE(total_callbacks >= 5);
  REQUIRE(total_callbacks <= total_ready);

  // The cancelled timer is recorded with the id it was scheduled with.
  std::uint64_t never_id = 0;
  for (auto& r : recs)
    if (r["ev"] == "timer_scheduled" && r["name"] == "never") never_id = r["id"];
  REQUIRE(never_id != 0);
  bool cancelled_seen = false;
  for (auto& r : recs)
    if (r["ev"] == "timer_cancelled") cancelled_seen = cancelled_seen || r["id"] == never_id;
  REQUIRE(cancelled_seen);
  // The exception record carries the context the handler got.
  for (auto& r : recs)
    if (r["ev"] == "exception")
      REQUIRE(r["context"]["message"].get<std::string>().find("thrower") != std::string::npos);
}

TEST_CASE("trace schema: the Chrome sink writes one JSON document, X events in microseconds") {
  TempFile file;
  auto tee = std::make_shared<TeeTracer>();
  tee->sinks.push_back(loop::make_chrome_tracer(file.open_for_writing(), true));
  int handled = 0;
  {
    loop::EventLoop lp;
    lp.set_tracer(tee);
    REQUIRE(run_workload(lp, handled) == 43);
  }
  auto doc = nlohmann::json::parse(file.read());  // throws if it is not one JSON document
  nlohmann::json events = doc.is_object() ? doc.at("traceEvents") : doc;
  REQUIRE(events.is_array());
  REQUIRE(events.size() > 10);

  std::map<std::uint64_t, nlohmann::json> x_by_id;
  std::map<std::uint64_t, int> flow_starts, flow_ends;
  bool process_named = false;
  for (auto& e : events) {
    REQUIRE(e.contains("ph"));
    REQUIRE(e.contains("pid"));
    REQUIRE(e.contains("name"));
    std::string ph = e["ph"];
    if (ph == "M" && e["name"] == "process_name") process_named = true;
    if (ph == "X") {
      REQUIRE(e["ts"].is_number());
      REQUIRE(e["dur"].is_number());
      REQUIRE(e["dur"].get<double>() >= 0);
      if (e["args"].contains("id") && e["args"].contains("started"))
        x_by_id[e["args"]["id"].get<std::uint64_t>()] = e;
    }
    if (ph == "s") ++flow_starts[e["id"].get<std::uint64_t>()];
    if (ph == "f") ++flow_ends[e["id"].get<std::uint64_t>()];
    if (ph != "M") REQUIRE(e["ts"].is_number());
  }
  REQUIRE(process_named);
  // Each callback record became an X event whose ts/dur are its started/duration in µs.
  int callbacks = 0;
  for (auto& r : tee->records) {
    if (r["ev"] != "callback") continue;
    ++callbacks;
    auto it = x_by_id.find(r["id"].get<std::uint64_t>());
    REQUIRE(it != x_by_id.end());
    REQUIRE(it->second["ts"].get<double>() ==
            Approx(r["started"].get<double>() * 1e6).margin(1e-3));
    REQUIRE(it->second["dur"].get<double>() ==
            Approx(r["duration"].get<double>() * 1e6).margin(1e-3));
    REQUIRE(it->second["name"] == r["name"]);
  }
  REQUIRE(callbacks >= 5);
  // Flow arrows come in start/finish pairs.
  REQUIRE_FALSE(flow_starts.empty());
  REQUIRE(flow_starts == flow_ends);
}

TEST_CASE("trace schema: the validator rejects records that break the schema") {
  auto schema = load_schema();
  nlohmann::json good = {{"ts", 1.5},       {"ev", "callback"}, {"id", 3},
                         {"name", "first"}, {"kind", "soon"},   {"scheduled", 1.0},
                         {"started", 1.25}, {"duration", 0.001}};
  REQUIRE(schema.valid(good));

  auto broken = [&](auto change) {
    nlohmann::json r = good;
    change(r);
    return r;
  };
  REQUIRE_FALSE(schema.valid(broken([](auto& r) { r.erase("ts"); })));
  REQUIRE_FALSE(schema.valid(broken([](auto& r) { r["ts"] = "1.5"; })));
  REQUIRE_FALSE(schema.valid(broken([](auto& r) { r.erase("ev"); })));
  REQUIRE_FALSE(schema.valid(broken([](auto& r) { r["ev"] = "no_such_event"; })));
  REQUIRE_FALSE(schema.valid(broken([](auto& r) { r.erase("duration"); })));
  REQUIRE_FALSE(schema.valid(broken([](auto& r) { r["duration"] = -1; })));
  REQUIRE_FALSE(schema.valid(broken([](auto& r) { r["kind"] = "sometime"; })));
  REQUIRE_FALSE(schema.valid(broken([](auto& r) { r["id"] = 1.5; })));
  REQUIRE_FALSE(schema.valid(nlohmann::json::array()));

  // Per-kind requirements: an iteration needs its own fields, not a callback's.
  nlohmann::json it = {{"ts", 2.0},  {"ev", "iteration"}, {"timeout", nullptr}, {"events", 0},
                       {"ready", 1}, {"timers", 0},       {"poll", 0.0}};
  REQUIRE(schema.valid(it));
  it.erase("ready");
  REQUIRE_FALSE(schema.valid(it));
  nlohmann::json lost = {{"ts", 2.0}, {"ev", "connection_lost"}, {"transport", 4}, {"reason", 3}};
  REQUIRE_FALSE(schema.valid(lost));
  lost["reason"] = nullptr;
  REQUIRE(schema.valid(lost));

  // The error names the path and the reason.
  auto errs = schema.errors(broken([](auto& r) { r["ts"] = "1.5"; }));
  REQUIRE_FALSE(errs.empty());
  REQUIRE(errs[0].find("$.ts") != std::string::npos);
  // A schema using a keyword the validator does not implement is refused, not half-checked.
  REQUIRE_THROWS_AS(loop_test::JsonSchema(nlohmann::json{{"pattern", "^a"}}),
                    std::invalid_argument);
}

TEST_CASE("trace schema: every example line in docs/trace.md validates") {
  auto schema = load_schema();
  std::ifstream in(std::string(LOOP_SOURCE_DIR) + "/docs/trace.md");
  REQUIRE(in.good());
  std::string line;
  std::set<std::string> documented;
  while (std::getline(in, line)) {
    if (line.rfind("{\"ts\"", 0) != 0) continue;  // example records start with {"ts"
    auto rec = nlohmann::json::parse(line);
    INFO(line);
    REQUIRE(schema.errors(rec).empty());
    documented.insert(rec["ev"].get<std::string>());
  }
  // One example per kind the schema knows.
  std::ifstream sin(std::string(LOOP_SOURCE_DIR) + "/docs/trace.schema.json");
  auto s = nlohmann::json::parse(sin);
  for (auto& ev : s["properties"]["ev"]["enum"]) {
    INFO(ev.get<std::string>());
    REQUIRE(documented.count(ev.get<std::string>()));
  }
}

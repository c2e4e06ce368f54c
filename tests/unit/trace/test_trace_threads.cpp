// Several loops, each on its own thread, tracing into one sink (loop::make_loop_tracer, as
// loopctl's --workers does): every record is tagged with its loop, each loop's records keep
// their order, and only the loop given the sink's end finishes it. Run under TSan too.
#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <map>
#include <thread>

#include "collecting_tracer.hpp"

namespace {

struct CountingSink : test::CollectingTracer {
  int finishes = 0;
  void finish() override { ++finishes; }
};

// Runs `n` callbacks on `lp`, each traced, then stops.
void run_callbacks(loop::EventLoop& lp, int n) {
  for (int i = 0; i < n; ++i) lp.call_soon([] {});
  lp.call_soon([&lp] { lp.stop(); });
  lp.run_forever();
}

}  // namespace

TEST_CASE("loops on two threads share one sink: tagged, each in order, finished once") {
  auto sink = std::make_shared<CountingSink>();
  auto shared = loop::share_trace_sink(sink);
  {
    loop::EventLoop first, second;
    first.set_tracer(loop::make_loop_tracer(shared, 0, true));
    second.set_tracer(loop::make_loop_tracer(shared, 1));
    std::thread other([&second] {
      run_callbacks(second, 500);
      second.close();
    });
    run_callbacks(first, 500);
    other.join();
    CHECK(sink->finishes == 0);  // the second loop's close only flushed
    first.close();
  }
  CHECK(sink->finishes == 1);

  std::map<int, std::vector<std::uint64_t>> callback_ids;
  for (const auto& rec : sink->records) {
    REQUIRE(rec.contains("loop"));
    int loop_number = rec["loop"].get<int>();
    REQUIRE((loop_number == 0 || loop_number == 1));
    if (rec["ev"] == "callback")
      callback_ids[loop_number].push_back(rec["id"].get<std::uint64_t>());
  }
  for (int loop_number : {0, 1}) {
    const auto& ids = callback_ids[loop_number];
    CHECK(ids.size() == 501);  // 500 callbacks and the stop
    CHECK(std::is_sorted(ids.begin(), ids.end()));
  }
}

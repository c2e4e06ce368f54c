// Flat trace records (loop::TraceField): the JSON Lines sink writes them without a JSON object,
// and must write the very bytes record() writes for the same object; a sink that only knows
// record() receives that object.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <loop/loop.hpp>
#include <string>
#include <vector>

#include "collecting_tracer.hpp"

namespace {

// What a JSON Lines tracer writes for the calls `write` makes on it.
template <class Write>
std::string jsonl_output(Write write) {
  std::FILE* f = std::tmpfile();
  REQUIRE(f);
  {
    auto tracer = loop::make_jsonl_tracer(f, false);
    write(*tracer);
    tracer->finish();
  }
  std::rewind(f);
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

}  // namespace

TEST_CASE("trace flat: the JSON Lines sink writes a flat record as record() writes its object") {
  const std::string invalid_utf8 = "bad \xff\xfe byte";
  std::vector<double> reals = {0.0,
                               -0.0,
                               1.0,
                               0.1,
                               1e-5,
                               4.2286e-05,
                               123.456,
                               1e15,
                               1e16,
                               1e21,
                               -2.5e-300,
                               1e300,
                               523.457559408,
                               1.0 / 3,
                               std::numeric_limits<double>::quiet_NaN(),
                               std::numeric_limits<double>::infinity()};
  for (double d : reals) {
    INFO(d);
    // Keys out of order, every type, strings that need escaping or are not ASCII.
    auto write = [&](bool flat) {
      return jsonl_output([&](loop::Tracer& t) {
        std::initializer_list<loop::TraceField> fields = {
            {"zeta", d},
            {"name", "Task.__step(\"quoted\" \\ back\tslash)"},
            {"id", std::uint64_t{18446744073709551615ULL}},
            {"delta", std::int64_t{-42}},
            {"ok", true},
            {"peer", nullptr},
            {"utf8", "caf\xc3\xa9"},
            {"invalid", invalid_utf8},
            {"a", 0},
            {"control", std::string_view("nul\0x", 5)}};
        std::span<const loop::TraceField> span(fields.begin(), fields.size());
        if (flat)
          t.record_flat(12.5, "callback", span);
        else
          t.record(loop::Tracer::to_json(12.5, "callback", span));
      });
    };
    std::string flat = write(true), object = write(false);
    CHECK(flat == object);
    auto rec = nlohmann::json::parse(flat);
    CHECK(rec["ev"] == "callback");
    CHECK(rec["id"].get<std::uint64_t>() == 18446744073709551615ULL);
    CHECK(rec["delta"] == -42);
    CHECK(rec["peer"].is_null());
    CHECK(rec["control"].get<std::string>() == std::string("nul\0x", 5));
    if (std::isfinite(d))
      CHECK(rec["zeta"].get<double>() == d);
    else
      CHECK(rec["zeta"].is_null());
    // "ts" and "ev" first, then the keys in order.
    CHECK(flat.rfind("{\"ts\":12.5,\"ev\":\"callback\",\"a\":0,\"control\":", 0) == 0);
  }
}

TEST_CASE("trace flat: keys that need escaping are escaped, on both paths") {
  const std::string key = "we\"ird\\key\n";
  std::string line = jsonl_output([&](loop::Tracer& t) {
    t.record({{"ts", 1.0}, {"ev", "custom"}, {key, 7}, {"caf\xc3\xa9", true}});
  });
  auto rec = nlohmann::json::parse(line);
  CHECK(rec[key] == 7);
  CHECK(rec["caf\xc3\xa9"] == true);
  CHECK(line.find("\"we\\\"ird\\\\key\\n\":7") != std::string::npos);
  std::string flat = jsonl_output([&](loop::Tracer& t) {
    loop::TraceField fields[] = {{key.c_str(), 7}};
    t.record_flat(1.0, "custom", fields);
  });
  CHECK(nlohmann::json::parse(flat)[key] == 7);
}

TEST_CASE("trace flat: a tracer that only implements record() gets the whole object") {
  auto tracer = std::make_shared<test::CollectingTracer>();
  loop::EventLoop lp;
  lp.set_tracer(tracer);
  lp.call_soon(loop::named("first", [] {}));
  lp.call_soon(loop::named("stopper", [&] { lp.stop(); }));
  lp.run_forever();
  lp.close();
  int callbacks = 0;
  for (auto& r : tracer->records) {
    REQUIRE(r.contains("ts"));
    REQUIRE(r.contains("ev"));
    if (r["ev"] != "callback") continue;
    ++callbacks;
    CHECK(r["kind"] == "soon");
    CHECK(r["duration"].get<double>() >= 0);
    CHECK(r["started"].get<double>() >= r["scheduled"].get<double>());
    CHECK(r["id"].is_number_unsigned());
  }
  CHECK(callbacks == 2);
  CHECK(tracer->records.front()["ev"] == "loop_start");
  CHECK(tracer->records.back()["ev"] == "loop_close");
  CHECK(tracer->records.back()["ready"] == 0);
}

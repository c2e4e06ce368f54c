// A trace sink that keeps every record, for tests that check what the loop traced.
#pragma once

#include <loop/loop.hpp>
#include <nlohmann/json.hpp>
#include <vector>

namespace test {

/// Implements record() only: the loop's flat records reach it as whole JSON objects.
struct CollectingTracer : loop::Tracer {
  std::vector<nlohmann::json> records;
  void record(const nlohmann::json& rec) override { records.push_back(rec); }
};

}  // namespace test

// The tracer interface the loop calls, and its two sinks. The schema of the records is
// documented in docs/trace.md and docs/trace.schema.json.
#pragma once

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace loop {

/// Receives one record per event. Every record has "ts" (seconds, loop.time()) and "ev" (its
/// kind); see docs/trace.md for the others. Called on the loop's thread only.
class Tracer {
 public:
  virtual ~Tracer() = default;
  virtual void record(const nlohmann::json& rec) = 0;
  /// Writes out what is buffered; the sink stays usable.
  virtual void flush() {}
  /// Completes the output (a Chrome trace's closing bracket); nothing is recorded after it.
  virtual void finish() { flush(); }
};

/// JSON Lines: one object per line, written to `out` (not closed by the tracer unless `owned`).
std::shared_ptr<Tracer> make_jsonl_tracer(std::FILE* out, bool owned = false);
/// Chrome Trace Event Format (a JSON array of events) that Perfetto and chrome://tracing open.
std::shared_ptr<Tracer> make_chrome_tracer(std::FILE* out, bool owned = false);
/// Opens `dest` ("-" = stderr) with the format "jsonl" or "chrome"; throws std::runtime_error
/// naming the file and the reason if it cannot be opened, std::invalid_argument for a bad format.
std::shared_ptr<Tracer> open_tracer(const std::string& dest, const std::string& format);

}  // namespace loop

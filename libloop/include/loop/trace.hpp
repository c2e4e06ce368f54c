// The tracer interface the loop calls, and its two sinks. The schema of the records is
// documented in docs/trace.md and docs/trace.schema.json.
#pragma once

#include <concepts>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

namespace loop {

/// One field of a flat record: a name and a scalar, borrowed for the duration of the call (no
/// copy, no allocation). The loop's frequent records (callback, iteration, data_received, ...)
/// are made of these, so that a sink can write them without building a JSON object.
struct TraceField {
  enum class Type : unsigned char { null, boolean, integer, unsigned_integer, real, string };

  TraceField(const char* k, std::nullptr_t) : key(k), type(Type::null) {}
  template <class T>
  requires std::same_as<T, bool> TraceField(const char* k, T v)
      : key(k), type(Type::boolean), b(v) {}
  template <std::signed_integral T>
  TraceField(const char* k, T v) : key(k), type(Type::integer), i(v) {}
  template <std::unsigned_integral T>
  requires(!std::same_as<T, bool>) TraceField(const char* k, T v)
      : key(k), type(Type::unsigned_integer), u(v) {}
  TraceField(const char* k, double v) : key(k), type(Type::real), d(v) {}
  TraceField(const char* k, std::string_view v) : key(k), type(Type::string), s(v) {}
  TraceField(const char* k, const char* v) : key(k), type(Type::string), s(v) {}
  TraceField(const char* k, const std::string& v) : key(k), type(Type::string), s(v) {}

  /// Calls f with the value as its own type: nullptr, bool, std::int64_t, std::uint64_t, double
  /// or std::string_view.
  template <class F>
  decltype(auto) visit(F&& f) const {
    switch (type) {
      case Type::boolean:
        return f(b);
      case Type::integer:
        return f(i);
      case Type::unsigned_integer:
        return f(u);
      case Type::real:
        return f(d);
      case Type::string:
        return f(s);
      case Type::null:
        break;
    }
    return f(nullptr);
  }

  const char* key;
  Type type;
  union {
    bool b;
    std::int64_t i;
    std::uint64_t u;
    double d;
  };
  std::string_view s;
};

/// Receives one record per event. Every record has "ts" (seconds, loop.time()) and "ev" (its
/// kind); see docs/trace.md for the others. Called on the loop's thread only.
class Tracer {
 public:
  virtual ~Tracer() = default;
  virtual void record(const nlohmann::json& rec) = 0;
  /// A record of scalar fields with distinct keys, none of them "ts" or "ev" (the loop's own
  /// records are: the sinks do not check). By default the JSON object
  /// record() takes; the JSON Lines sink writes it directly, the same bytes without the object.
  virtual void record_flat(double ts, const char* ev, std::span<const TraceField> fields) {
    record(to_json(ts, ev, fields));
  }
  /// Writes out what is buffered; the sink stays usable.
  virtual void flush() {}
  /// Completes the output (a Chrome trace's closing bracket); nothing is recorded after it.
  virtual void finish() { flush(); }

  /// The JSON object of a flat record, as record() receives it.
  static nlohmann::json to_json(double ts, const char* ev, std::span<const TraceField> fields);
};

/// JSON Lines: one object per line, written to `out` (not closed by the tracer unless `owned`).
std::shared_ptr<Tracer> make_jsonl_tracer(std::FILE* out, bool owned = false);
/// Chrome Trace Event Format (a JSON array of events) that Perfetto and chrome://tracing open.
std::shared_ptr<Tracer> make_chrome_tracer(std::FILE* out, bool owned = false);
/// A sink several loops write to, one per thread (see make_loop_tracer).
struct SharedTraceSink;
std::shared_ptr<SharedTraceSink> share_trace_sink(std::shared_ptr<Tracer> sink);
/// The tracer of loop number `loop_number` among those sharing `shared`: its records get a
/// "loop" field and reach the sink under a lock they share. Its finish() (at the loop's
/// close) finishes the sink if `finishes_sink` (give that to the loop that closes last),
/// else flushes it.
std::shared_ptr<Tracer> make_loop_tracer(std::shared_ptr<SharedTraceSink> shared, int loop_number,
                                         bool finishes_sink = false);

/// Opens `dest` ("-" = stderr) with the format "jsonl" or "chrome"; throws std::runtime_error
/// naming the file and the reason if it cannot be opened, std::invalid_argument for a bad format.
std::shared_ptr<Tracer> open_tracer(const std::string& dest, const std::string& format);

}  // namespace loop

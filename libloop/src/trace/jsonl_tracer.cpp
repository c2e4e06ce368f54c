// The JSON Lines sink: one record per line, flushed whenever the loop is about to wait.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "loop/trace.hpp"

namespace loop {

namespace {

class JsonlTracer final : public Tracer {
 public:
  JsonlTracer(std::FILE* out, bool owned)
      : out_(out),
        owned_(owned),
        serializer_(
            std::make_shared<nlohmann::detail::output_string_adapter<char, std::string>>(line_),
            ' ', nlohmann::json::error_handler_t::replace) {}
  ~JsonlTracer() override { finish(); }

  void record(const nlohmann::json& rec) override {
    if (!out_) return;
    // "ts" and "ev" first, so a person reading the lines sees when and what at once; the rest
    // in key order. Serialized into one reused string by one serializer (json::dump would
    // make a string and an output adapter per field).
    line_.clear();
    line_ += '{';
    for (const char* key : {"ts", "ev"}) {
      auto it = rec.find(key);
      if (it == rec.end()) continue;
      append_field(key, *it);
    }
    for (auto it = rec.begin(); it != rec.end(); ++it) {
      if (it.key() == "ts" || it.key() == "ev") continue;
      append_field(it.key(), it.value());
    }
    end_line();
  }
  // The same bytes as record(to_json(...)) gives, written straight from the fields: the loop
  // sends its frequent records this way, and building a JSON object for each (a std::map node
  // and a string per field) cost more than the rest of a traced echo request together.
  void record_flat(double ts, const char* ev, std::span<const TraceField> fields) override {
    if (!out_) return;
    // The remaining keys in the order of record()'s object (std::map: by byte value). Records
    // have a handful of fields: an insertion sort of pointers.
    constexpr std::size_t kMaxFields = 16;
    if (fields.size() > kMaxFields) {
      record(to_json(ts, ev, fields));
      return;
    }
    const TraceField* order[kMaxFields];
    std::size_t count = 0;
    for (const TraceField& f : fields) {
      std::size_t j = count++;
      while (j > 0 && std::strcmp(order[j - 1]->key, f.key) > 0) {
        order[j] = order[j - 1];
        --j;
      }
      order[j] = &f;
    }
    line_.clear();
    line_ += "{\"ts\":";
    append_double(ts);
    line_ += ",\"ev\":";
    append_string(ev);
    for (std::size_t k = 0; k < count; ++k) {
      const TraceField& f = *order[k];
      line_ += ',';
      append_string(f.key);
      line_ += ':';
      f.visit([this](auto v) { append_value(v); });
    }
    end_line();
  }
  void flush() override {
    if (out_) std::fflush(out_);
  }
  void finish() override {
    if (!out_) return;
    flush();
    if (owned_) std::fclose(out_);
    out_ = nullptr;
  }

 private:
  // Closes the record and writes it whole; stdio flushes when its buffer fills and the loop
  // flushes whenever it is about to wait (EventLoop::run_once), so a reader following the
  // trace live (tail -f, a pipe into jq) has every record by the time the loop goes idle.
  void end_line() {
    line_ += "}\n";
    std::fwrite(line_.data(), 1, line_.size(), out_);
  }
  void append_field(const std::string& key, const nlohmann::json& value) {
    if (line_.size() > 1) line_ += ',';
    append_string(key);
    line_ += ':';
    serializer_.dump(value, false, false, 0);  // appends to line_
  }

  void append_value(std::nullptr_t) { line_ += "null"; }
  void append_value(bool v) { line_ += v ? "true" : "false"; }
  void append_value(std::string_view v) { append_string(v); }
  void append_value(double v) { append_double(v); }
  template <std::integral T>
  void append_value(T v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    line_.append(buf, r.ptr);
  }
  // nlohmann's own formatting (as dump() writes a number): the same bytes on both paths.
  void append_double(double v) {
    if (!std::isfinite(v)) {
      line_ += "null";
      return;
    }
    char buf[64];
    char* end = nlohmann::detail::to_chars(buf, buf + sizeof buf, v);
    line_.append(buf, end);
  }
  // A key or a string value. Printable ASCII is copied as it is; anything to escape or outside
  // ASCII goes through nlohmann's serializer (escapes, invalid UTF-8 replaced): the bytes
  // json::dump writes either way.
  void append_string(std::string_view s) {
    bool plain = std::all_of(s.begin(), s.end(),
                             [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
    if (!plain) {
      serializer_.dump(nlohmann::json(std::string(s)), false, false, 0);
      return;
    }
    line_ += '"';
    line_ += s;
    line_ += '"';
  }

  std::FILE* out_;
  bool owned_;
  std::string line_;  // the record being written; its capacity is kept
  // Writes into line_ (declared after it); nlohmann's own, as json::dump uses it.
  nlohmann::detail::serializer<nlohmann::json> serializer_;
};

}  // namespace

std::shared_ptr<Tracer> make_jsonl_tracer(std::FILE* out, bool owned) {
  return std::make_shared<JsonlTracer>(out, owned);
}

}  // namespace loop

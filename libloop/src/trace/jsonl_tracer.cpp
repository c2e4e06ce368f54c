// The JSON Lines sink: one record per line, flushed whenever the loop is about to wait.
#include <cctype>
#include <cstdio>
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
    line_ += "}\n";
    // Written whole; stdio flushes when its buffer fills and the loop flushes whenever it is
    // about to wait (EventLoop::run_once), so a reader following the trace live (tail -f, a
    // pipe into jq) has every record by the time the loop goes idle.
    std::fwrite(line_.data(), 1, line_.size(), out_);
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
  void append_field(const std::string& key, const nlohmann::json& value) {
    if (line_.size() > 1) line_ += ',';
    if (plain_name(key)) {
      line_ += '"';
      line_ += key;
      line_ += '"';
    } else {
      serializer_.dump(nlohmann::json(key), false, false, 0);
    }
    line_ += ':';
    serializer_.dump(value, false, false, 0);  // appends to line_
  }

  // A field name that needs no escaping (all of the loop's own are).
  static bool plain_name(const std::string& key) {
    for (char c : key)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
    return true;
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

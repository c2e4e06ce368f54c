// The JSON Lines sink: one record per line, flushed at each loop iteration boundary.
#include <cstdio>

#include "loop/trace.hpp"

namespace loop {

namespace {

class JsonlTracer final : public Tracer {
 public:
  JsonlTracer(std::FILE* out, bool owned) : out_(out), owned_(owned) {}
  ~JsonlTracer() override { finish(); }

  void record(const nlohmann::json& rec) override {
    if (!out_) return;
    // "ts" and "ev" first, so a person reading the lines sees when and what at once; the rest
    // in key order.
    constexpr auto replace = nlohmann::json::error_handler_t::replace;
    std::string line = "{";
    for (const char* key : {"ts", "ev"}) {
      auto it = rec.find(key);
      if (it == rec.end()) continue;
      if (line.size() > 1) line += ',';
      line += '"';
      line += key;
      line += "\":" + it->dump(-1, ' ', false, replace);
    }
    for (auto it = rec.begin(); it != rec.end(); ++it) {
      if (it.key() == "ts" || it.key() == "ev") continue;
      if (line.size() > 1) line += ',';
      line += nlohmann::json(it.key()).dump() + ":" + it->dump(-1, ' ', false, replace);
    }
    line += "}\n";
    std::fwrite(line.data(), 1, line.size(), out_);
    // Readers follow the trace live (tail -f, a pipe into jq): whole lines, promptly.
    if (++unflushed_ >= 64 || rec.value("ev", "") != "callback") flush();
  }
  void flush() override {
    if (out_) std::fflush(out_);
    unflushed_ = 0;
  }
  void finish() override {
    if (!out_) return;
    flush();
    if (owned_) std::fclose(out_);
    out_ = nullptr;
  }

 private:
  std::FILE* out_;
  bool owned_;
  int unflushed_ = 0;
};

}  // namespace

std::shared_ptr<Tracer> make_jsonl_tracer(std::FILE* out, bool owned) {
  return std::make_shared<JsonlTracer>(out, owned);
}

}  // namespace loop

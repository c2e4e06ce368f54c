// The Chrome Trace Event Format sink: a JSON array that chrome://tracing and Perfetto open.
// Callbacks and polls become complete ("X") events on the loop's track; everything else is an
// instant ("i") event with its fields as args. Timestamps are microseconds of loop.time().
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

#include "loop/trace.hpp"

namespace loop {

namespace {

class ChromeTracer final : public Tracer {
 public:
  ChromeTracer(std::FILE* out, bool owned) : out_(out), owned_(owned) {
    std::fputs("[\n", out_);
    write({{"name", "process_name"},
           {"ph", "M"},
           {"pid", pid_},
           {"tid", 1},
           {"args", {{"name", "libloop"}}}});
    write({{"name", "thread_name"},
           {"ph", "M"},
           {"pid", pid_},
           {"tid", 1},
           {"args", {{"name", "event loop"}}}});
  }
  ~ChromeTracer() override { finish(); }

  void record(const nlohmann::json& rec) override {
    if (!out_) return;
    const std::string ev = rec.value("ev", "");
    // Loops sharing the sink (make_loop_tracer) tag their records: one track each.
    const int tid = rec.value("loop", 0) + 1;
    if (tid != 1 && named_tids_.insert(tid).second)
      write({{"name", "thread_name"},
             {"ph", "M"},
             {"pid", pid_},
             {"tid", tid},
             {"args", {{"name", "event loop " + std::to_string(tid - 1)}}}});
    nlohmann::json args = rec;
    args.erase("ts");
    args.erase("ev");
    if (ev == "callback") {
      double started = rec.value("started", rec.value("ts", 0.0));
      double scheduled = rec.value("scheduled", 0.0);
      std::string kind = rec.value("kind", "callback");
      write({{"name", rec.value("name", "callback")},
             {"cat", kind},
             {"ph", "X"},
             {"pid", pid_},
             {"tid", tid},
             {"ts", us(started)},
             {"dur", us(rec.value("duration", 0.0))},
             {"args", args}});
      // A flow arrow from where the callback was queued to where it ran. A timer's
      // "scheduled" is its deadline, not the moment call_later ran, so timers get none; nor
      // do handles queued before the tracer was set (scheduled 0).
      if (kind != "timer" && scheduled > 0 && scheduled <= started) {
        auto id = rec.value("id", std::uint64_t{0});
        write({{"name", "scheduled"},
               {"cat", "flow"},
               {"ph", "s"},
               {"id", id},
               {"pid", pid_},
               {"tid", tid},
               {"ts", us(scheduled)}});
        write({{"name", "scheduled"},
               {"cat", "flow"},
               {"ph", "f"},
               {"bp", "e"},
               {"id", id},
               {"pid", pid_},
               {"tid", tid},
               {"ts", us(started)}});
      }
    } else if (ev == "iteration") {
      double poll = rec.value("poll", 0.0);
      double end = rec.value("ts", 0.0);
      write({{"name", "poll"},
             {"cat", "iteration"},
             {"ph", "X"},
             {"pid", pid_},
             {"tid", tid},
             {"ts", us(end - poll)},
             {"dur", us(poll)},
             {"args", args}});
    } else {
      write({{"name", ev},
             {"cat", category(ev)},
             {"ph", "i"},
             {"s", "t"},
             {"pid", pid_},
             {"tid", tid},
             {"ts", us(rec.value("ts", 0.0))},
             {"args", args}});
    }
  }
  void flush() override {
    if (out_) std::fflush(out_);
  }
  void finish() override {
    if (!out_) return;
    // The closing bracket makes the document valid JSON (the viewers accept it either way).
    std::fputs("\n]\n", out_);
    std::fflush(out_);
    if (owned_) std::fclose(out_);
    out_ = nullptr;
  }

 private:
  static double us(double seconds) { return seconds * 1e6; }
  static std::string category(const std::string& ev) {
    auto dot = ev.find('_');
    return dot == std::string::npos ? ev : ev.substr(0, dot);
  }
  void write(const nlohmann::json& e) {
    if (!first_) std::fputs(",\n", out_);
    first_ = false;
    std::string s = e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::fwrite(s.data(), 1, s.size(), out_);
  }

  std::FILE* out_;
  bool owned_;
  bool first_ = true;
  int pid_ = static_cast<int>(::getpid());
  std::set<int> named_tids_;  // tracks of loops other than the first, named once
};

}  // namespace

std::shared_ptr<Tracer> make_chrome_tracer(std::FILE* out, bool owned) {
  return std::make_shared<ChromeTracer>(out, owned);
}

std::shared_ptr<Tracer> open_tracer(const std::string& dest, const std::string& format) {
  if (format != "jsonl" && format != "chrome")
    throw std::invalid_argument("unknown trace format '" + format + "' (jsonl or chrome)");
  std::FILE* out = stderr;
  bool owned = false;
  if (!dest.empty() && dest != "-") {
    out = std::fopen(dest.c_str(), "w");
    if (!out)
      throw std::runtime_error("cannot open trace file " + dest + ": " + std::strerror(errno));
    // stdio's default (the file's block size, 4 KiB) means a write(2) every ~25 records on a
    // busy loop; the loop flushes whenever it goes idle anyway (EventLoop::run_once).
    std::setvbuf(out, nullptr, _IOFBF, 256 * 1024);
    owned = true;
  }
  return format == "jsonl" ? make_jsonl_tracer(out, owned) : make_chrome_tracer(out, owned);
}

}  // namespace loop

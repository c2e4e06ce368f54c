// One trace sink for several loops, each running on its own thread (loopctl's --workers):
// every loop gets a tracer that tags its records with the loop's number and writes them
// under the lock they all share. Records of different loops interleave in time order of
// writing; each loop's own records keep their order.
#include <mutex>
#include <vector>

#include "loop/trace.hpp"

namespace loop {

struct SharedTraceSink {
  explicit SharedTraceSink(std::shared_ptr<Tracer> s) : sink(std::move(s)) {}
  std::shared_ptr<Tracer> sink;
  std::mutex mutex;
};

namespace {

class LoopTaggingTracer final : public Tracer {
 public:
  LoopTaggingTracer(std::shared_ptr<SharedTraceSink> shared, int loop_number, bool finishes)
      : shared_(std::move(shared)), loop_(loop_number), finishes_(finishes) {}

  void record(const nlohmann::json& rec) override {
    nlohmann::json tagged = rec;
    tagged["loop"] = loop_;
    std::lock_guard<std::mutex> lock(shared_->mutex);
    shared_->sink->record(tagged);
  }
  void record_flat(double ts, const char* ev, std::span<const TraceField> fields) override {
    // Called on this loop's thread only: the vector's room is reused, record after record.
    tagged_.assign(fields.begin(), fields.end());
    tagged_.emplace_back("loop", loop_);
    std::lock_guard<std::mutex> lock(shared_->mutex);
    shared_->sink->record_flat(ts, ev, tagged_);
  }
  void flush() override {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    shared_->sink->flush();
  }
  // Only the loop that closes last finishes the sink (a Chrome trace's closing bracket);
  // the others flush their part.
  void finish() override {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    if (finishes_)
      shared_->sink->finish();
    else
      shared_->sink->flush();
  }

 private:
  std::shared_ptr<SharedTraceSink> shared_;
  int loop_;
  bool finishes_;
  std::vector<TraceField> tagged_;
};

}  // namespace

std::shared_ptr<SharedTraceSink> share_trace_sink(std::shared_ptr<Tracer> sink) {
  return std::make_shared<SharedTraceSink>(std::move(sink));
}

std::shared_ptr<Tracer> make_loop_tracer(std::shared_ptr<SharedTraceSink> shared, int loop_number,
                                         bool finishes_sink) {
  return std::make_shared<LoopTaggingTracer>(std::move(shared), loop_number, finishes_sink);
}

}  // namespace loop

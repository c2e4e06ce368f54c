// Tracer's default for flat records: the JSON object record() takes.
#include "loop/trace.hpp"

namespace loop {

nlohmann::json Tracer::to_json(double ts, const char* ev, std::span<const TraceField> fields) {
  nlohmann::json rec = nlohmann::json::object();
  for (const TraceField& f : fields) rec[f.key] = f.visit([](auto v) { return nlohmann::json(v); });
  rec["ts"] = ts;
  rec["ev"] = ev;
  return rec;
}

}  // namespace loop

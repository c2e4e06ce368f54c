// Tracer's default for flat records: the JSON object record() takes.
#include "loop/trace.hpp"

namespace loop {

nlohmann::json Tracer::to_json(double ts, const char* ev, std::span<const TraceField> fields) {
  nlohmann::json rec = nlohmann::json::object();
  for (const TraceField& f : fields) {
    nlohmann::json& v = rec[f.key];
    switch (f.type) {
      case TraceField::Type::null:
        v = nullptr;
        break;
      case TraceField::Type::boolean:
        v = f.b;
        break;
      case TraceField::Type::integer:
        v = f.i;
        break;
      case TraceField::Type::unsigned_integer:
        v = f.u;
        break;
      case TraceField::Type::real:
        v = f.d;
        break;
      case TraceField::Type::string:
        v = std::string(f.s);
        break;
    }
  }
  rec["ts"] = ts;
  rec["ev"] = ev;
  return rec;
}

}  // namespace loop

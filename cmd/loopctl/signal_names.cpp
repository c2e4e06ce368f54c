#include "signal_names.hpp"

#include <signal.h>

#include <algorithm>
#include <cctype>
#include <loop/signals.hpp>

#include "command.hpp"

namespace loopctl {

namespace {
int parse_one(std::string name) {
  std::string orig = name;
  if (name.empty()) throw UsageError("empty signal name in the list");
  if (std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c); })) {
    int n = std::stoi(name);
    if (n <= 0 || n >= NSIG) throw UsageError("invalid signal number " + orig);
    return n;
  }
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  if (name.rfind("SIG", 0) != 0) name = "SIG" + name;
  for (int sig = 1; sig < NSIG; ++sig)
    if (loop::signal_name(sig) == name) return sig;
  throw UsageError("unknown signal '" + orig + "'");
}
}  // namespace

std::vector<int> parse_signal_list(const std::string& text) {
  std::vector<int> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    int sig = parse_one(text.substr(start, comma - start));
    if (std::find(out.begin(), out.end(), sig) == out.end()) out.push_back(sig);
    start = comma + 1;
  }
  return out;
}

}  // namespace loopctl

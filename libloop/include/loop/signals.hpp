// Signal names for reports, traces and programs (Python's signal.Signals(n).name).
#pragma once

#include <string>

namespace loop {

/// "SIGINT" for SIGINT, "SIGRTMIN+3" for real-time ones, "signal N" when it has no name.
std::string signal_name(int sig);

}  // namespace loop

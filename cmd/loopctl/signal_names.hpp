// Signal names as users type them: SIGINT, INT, int, or a number.
#pragma once

#include <string>
#include <vector>

namespace loopctl {

/// Parses "SIGINT,SIGTERM" into signal numbers; throws UsageError naming a bad entry.
std::vector<int> parse_signal_list(const std::string& text);

}  // namespace loopctl

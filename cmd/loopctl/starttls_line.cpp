// The STARTTLS line (see starttls_line.hpp); fuzzed by fuzz/fuzz_starttls_lines.cpp.
#include "starttls_line.hpp"

namespace loopctl {

StartTlsLine::Verdict StartTlsLine::refuse(const char* answer) {
  refusal_ = answer;
  line_.clear();
  return verdict_ = Verdict::refuse;
}

StartTlsLine::Verdict StartTlsLine::feed(std::string_view data) {
  if (verdict_ != Verdict::need_more) return verdict_;
  auto nl = data.find('\n');
  if (nl == std::string_view::npos) {
    // Never hold more than a line's worth, whatever one read brings.
    if (line_.size() + data.size() > kMaxLine + 1) return refuse("ERR line too long\r\n");
    line_.append(data);
    return verdict_;
  }
  if (line_.size() + nl > kMaxLine + 1) return refuse("ERR line too long\r\n");
  line_.append(data.substr(0, nl));
  std::string_view line = line_;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // Bytes after the line are a protocol error: they would be the client's TLS records, sent
  // before our answer.
  if (line != "STARTTLS" || nl + 1 != data.size()) return refuse("ERR expected STARTTLS\r\n");
  line_.clear();
  return verdict_ = Verdict::upgrade;
}

}  // namespace loopctl

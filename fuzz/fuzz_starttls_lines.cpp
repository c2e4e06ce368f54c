// tls-proxy --starttls's line handling (loopctl::StartTlsLine) fed arbitrary bytes cut into
// arbitrary data_received chunks. Input: <chunk sizes>\n--\n<bytes>.
// Checks, against the rule re-derived here from what was fed until the verdict:
// - upgrade only when the bytes are exactly "STARTTLS\n" or "STARTTLS\r\n";
// - refuse only for a wrong line, bytes after the line, or more than a line's worth;
// - need_more only while no newline came and the line still fits;
// - never more than a line's worth held; the verdict, once given, never changes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "starttls_line.hpp"

using loopctl::StartTlsLine;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto [control, payload] = loop::fuzz::split_input(data, size);
  loop::fuzz::Chunker chunker(control);
  StartTlsLine line;
  std::string fed;
  auto verdict = StartTlsLine::Verdict::need_more;
  for (auto chunk : chunker.split(payload)) {
    fed.append(chunk);
    verdict = line.feed(chunk);
    FUZZ_CHECK(line.buffered() <= StartTlsLine::kMaxLine + 1);
    if (verdict != StartTlsLine::Verdict::need_more) break;
  }
  auto nl = fed.find('\n');
  switch (verdict) {
    case StartTlsLine::Verdict::upgrade:
      FUZZ_CHECK(fed == "STARTTLS\n" || fed == "STARTTLS\r\n");
      break;
    case StartTlsLine::Verdict::refuse:
      FUZZ_CHECK(fed != "STARTTLS\n" && fed != "STARTTLS\r\n");
      FUZZ_CHECK(nl != std::string::npos || fed.size() > StartTlsLine::kMaxLine + 1);
      FUZZ_CHECK(std::string(line.refusal()).rfind("ERR ", 0) == 0);
      break;
    case StartTlsLine::Verdict::need_more:
      FUZZ_CHECK(nl == std::string::npos && fed.size() <= StartTlsLine::kMaxLine + 1);
      break;
  }
  // Final: more bytes change nothing.
  FUZZ_CHECK(line.feed("STARTTLS\n") == verdict || verdict == StartTlsLine::Verdict::need_more);
  return 0;
}

// tls-proxy --starttls: what a client may send before its connection is upgraded. One line,
// "STARTTLS" ended by \n or \r\n, and nothing after it: the client must wait for our answer
// before its ClientHello, so that no byte is ever taken in plaintext for the TLS session.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace loopctl {

class StartTlsLine {
 public:
  enum class Verdict { need_more, upgrade, refuse };
  /// A line longer than this (without its newline) is refused.
  static constexpr std::size_t kMaxLine = 1024;

  /// Feeds the bytes one data_received got. The first verdict other than need_more is final:
  /// later calls return it again and keep nothing.
  Verdict feed(std::string_view data);
  Verdict verdict() const { return verdict_; }
  /// What to answer before closing, once refused ("ERR ...\r\n").
  const char* refusal() const { return refusal_; }
  /// The bytes held while a line is incomplete (at most kMaxLine + 1).
  std::size_t buffered() const { return line_.size(); }

 private:
  Verdict refuse(const char* answer);

  std::string line_;
  Verdict verdict_ = Verdict::need_more;
  const char* refusal_ = "";
};

}  // namespace loopctl

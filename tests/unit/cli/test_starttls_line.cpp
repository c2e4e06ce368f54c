// tls-proxy --starttls's line handling: what the client may send before the upgrade.
#include <catch2/catch.hpp>
#include <string>

#include "starttls_line.hpp"

using loopctl::StartTlsLine;
using V = StartTlsLine::Verdict;

TEST_CASE("STARTTLS: the line, whole or in pieces, ended by LF or CRLF, upgrades") {
  StartTlsLine a;
  CHECK(a.feed("STARTTLS\n") == V::upgrade);
  StartTlsLine b;
  CHECK(b.feed("STAR") == V::need_more);
  CHECK(b.feed("TTLS\r") == V::need_more);
  CHECK(b.feed("\n") == V::upgrade);
  CHECK(b.buffered() == 0);
}

TEST_CASE("STARTTLS: bytes after the line are refused (they would cross in plaintext)") {
  StartTlsLine a;
  CHECK(a.feed("STARTTLS\n\x16\x03\x01") == V::refuse);
  CHECK(std::string(a.refusal()) == "ERR expected STARTTLS\r\n");
  // Final: nothing fed later changes it.
  CHECK(a.feed("STARTTLS\n") == V::refuse);
}

TEST_CASE("STARTTLS: another line is refused") {
  StartTlsLine a;
  CHECK(a.feed("starttls\n") == V::refuse);
  StartTlsLine b;
  CHECK(b.feed("STARTTLS \n") == V::refuse);
  StartTlsLine c;
  CHECK(c.feed("\n") == V::refuse);
}

TEST_CASE("STARTTLS: a line longer than the limit is refused without holding it") {
  StartTlsLine a;
  std::string chunk(600, 'A');
  CHECK(a.feed(chunk) == V::need_more);
  CHECK(a.feed(chunk) == V::refuse);
  CHECK(std::string(a.refusal()) == "ERR line too long\r\n");
  CHECK(a.buffered() == 0);
  StartTlsLine b;
  CHECK(b.feed(std::string(5000, 'A') + "\n") == V::refuse);
}

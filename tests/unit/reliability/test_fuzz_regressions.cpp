// Inputs the fuzz targets (fuzz/) found or were written to catch, kept as regression tests.
#include <catch2/catch.hpp>
#include <loop/address.hpp>
#include <stdexcept>
#include <string>

using namespace std::string_literals;

TEST_CASE("fuzz_address: a numeric host with an embedded NUL is refused, not truncated") {
  // inet_pton stops at the NUL, so "127.0.0.1\0junk" used to parse as 127.0.0.1.
  CHECK_THROWS_AS(loop::SocketAddress::from_ip("127.0.0.1\0junk"s, 80), std::invalid_argument);
  CHECK_THROWS_AS(loop::SocketAddress::from_ip("::1\0"s, 80), std::invalid_argument);
  CHECK(loop::SocketAddress::from_ip("127.0.0.1", 80).to_string() == "127.0.0.1:80");
}

TEST_CASE("fuzz_address: short or odd sockaddr bytes print without reading past them") {
  // A unix address of the family alone (an unnamed peer, as recvfrom gives it).
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  loop::SocketAddress a(reinterpret_cast<const sockaddr*>(&un), sizeof(sa_family_t));
  CHECK(a.host().empty());
  CHECK(a.to_string() == "unix:");
  // An AF_INET family with too few bytes reads zeros, not memory beyond the copy.
  sockaddr_in in{};
  in.sin_family = AF_INET;
  loop::SocketAddress b(reinterpret_cast<const sockaddr*>(&in), 4);
  CHECK(b.to_string() == "0.0.0.0:0");
}

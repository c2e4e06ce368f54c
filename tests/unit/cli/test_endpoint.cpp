// loopctl's endpoint syntax (../shared/spec/loopctl.md, "Addresses").
#include <catch2/catch.hpp>

#include "command.hpp"
#include "endpoint.hpp"

using loopctl::Endpoint;
using loopctl::parse_endpoint;
using loopctl::UsageError;

TEST_CASE("host:port") {
  Endpoint e = parse_endpoint("127.0.0.1:8888");
  CHECK_FALSE(e.is_unix());
  CHECK(e.host == "127.0.0.1");
  CHECK(e.port == 8888);
  CHECK(e.to_string() == "127.0.0.1:8888");
  CHECK(parse_endpoint("localhost:0").port == 0);
  CHECK(parse_endpoint("example.org:65535").port == 65535);
}

TEST_CASE("bracketed IPv6") {
  Endpoint e = parse_endpoint("[::1]:9000");
  CHECK(e.host == "::1");
  CHECK(e.port == 9000);
  CHECK(e.to_string() == "[::1]:9000");
}

TEST_CASE("unix paths and abstract names") {
  Endpoint e = parse_endpoint("unix:/tmp/echo.sock");
  CHECK(e.is_unix());
  CHECK(e.path == "/tmp/echo.sock");
  CHECK(parse_endpoint("unix:@name").path == "@name");
  CHECK(parse_endpoint("unix:@name").to_string() == "unix:@name");
}

TEST_CASE("malformed endpoints are usage errors that say why") {
  for (const char* bad :
       {"", "8888", "host", ":80", "host:", "host:port", "host:-1", "host:65536", "host:99999999",
        "[::1]", "[::1]80", "[nope]:80", "::1:80", "unix:", "unix:@"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_endpoint(bad), UsageError);
  }
  CHECK_THROWS_WITH(parse_endpoint("host:65536"), Catch::Contains("out of range 0-65535"));
  CHECK_THROWS_WITH(parse_endpoint("::1:80"), Catch::Contains("needs brackets"));
  CHECK_THROWS_WITH(parse_endpoint("nonsense"), Catch::Contains("expected HOST:PORT"));
}

TEST_CASE("an endpoint with a NUL byte is refused") {
  CHECK_THROWS_AS(parse_endpoint(std::string("127.0.0.1\0x:80", 14)), UsageError);
  CHECK_THROWS_AS(parse_endpoint(std::string("unix:/tmp/a\0b", 13)), UsageError);
}

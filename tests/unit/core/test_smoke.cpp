#include <catch2/catch.hpp>
#include <loop/loop.hpp>
TEST_CASE("smoke") {
  loop::EventLoop lp;
  int n = 0;
  lp.call_soon([&] {
    ++n;
    lp.stop();
  });
  lp.run_forever();
  REQUIRE(n == 1);
}

// getaddrinfo / getnameinfo as coroutines run in the default executor (asyncio's loop methods).
#include <netdb.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <string>
#include <vector>

namespace {

bool has_address(const std::vector<loop::AddrInfo>& infos, const std::string& text) {
  for (auto& i : infos)
    if (i.address.to_string() == text) return true;
  return false;
}

loop::Coroutine<std::vector<loop::AddrInfo>> resolve_counting(loop::EventLoop& lp,
                                                              int* ran_meanwhile) {
  // A callback scheduled now runs while the lookup is in the executor: the loop is not blocked.
  lp.call_soon([ran_meanwhile] { ++*ran_meanwhile; });
  co_return co_await lp.getaddrinfo("localhost", "80", AF_INET, SOCK_STREAM);
}

}  // namespace

TEST_CASE("getaddrinfo of localhost gives 127.0.0.1 with the port, without blocking the loop") {
  loop::EventLoop lp;
  int ran = 0;
  auto infos = lp.run_until_complete(resolve_counting(lp, &ran));
  CHECK(ran == 1);
  REQUIRE_FALSE(infos.empty());
  CHECK(has_address(infos, "127.0.0.1:80"));
  for (auto& i : infos) {
    CHECK(i.family == AF_INET);
    CHECK(i.type == SOCK_STREAM);
    CHECK(i.address.port() == 80);
  }
  lp.close();
}

TEST_CASE("getaddrinfo of ::1 (AI_NUMERICHOST) and AI_CANONNAME") {
  loop::EventLoop lp;
  auto infos =
      lp.run_until_complete(lp.getaddrinfo("::1", "443", AF_INET6, SOCK_STREAM, 0, AI_NUMERICHOST));
  REQUIRE(infos.size() == 1);
  CHECK(infos[0].family == AF_INET6);
  CHECK(infos[0].proto == IPPROTO_TCP);
  CHECK(infos[0].address.to_string() == "[::1]:443");
  auto canon =
      lp.run_until_complete(lp.getaddrinfo("localhost", "", AF_INET, SOCK_STREAM, 0, AI_CANONNAME));
  REQUIRE_FALSE(canon.empty());
  CHECK_FALSE(canon[0].canonname.empty());
  lp.close();
}

TEST_CASE("getaddrinfo of an unknown host raises GaiError naming it") {
  loop::EventLoop lp;
  try {
    lp.run_until_complete(lp.getaddrinfo("no-such-host.invalid", "80"));
    FAIL("an .invalid name resolved");
  } catch (const loop::GaiError& e) {
    // EAI_NONAME normally; EAI_AGAIN where no resolver answers at all.
    int code = e.code().value();
    CHECK((code == EAI_NONAME || code == EAI_AGAIN || code == EAI_FAIL));
    CHECK(e.code().category() == loop::gai_category());
    CHECK_THAT(e.what(), Catch::Contains("no-such-host.invalid"));
    CHECK_THAT(e.what(), Catch::EndsWith(gai_strerror(code)));
    // An OSError in Python: a std::system_error here, caught as one.
    CHECK(dynamic_cast<const std::system_error*>(&e) != nullptr);
  }
  // A bad flag combination fails as well, with the code kept.
  CHECK_THROWS_AS(lp.run_until_complete(lp.getaddrinfo("", "")), loop::GaiError);
  lp.close();
}

TEST_CASE("getnameinfo of 127.0.0.1 and ::1") {
  loop::EventLoop lp;
  auto [host, serv] = lp.run_until_complete(lp.getnameinfo(
      loop::SocketAddress::from_ip("127.0.0.1", 8080), NI_NUMERICHOST | NI_NUMERICSERV));
  CHECK(host == "127.0.0.1");
  CHECK(serv == "8080");
  auto [host6, serv6] = lp.run_until_complete(
      lp.getnameinfo(loop::SocketAddress::from_ip("::1", 22), NI_NUMERICHOST | NI_NUMERICSERV));
  CHECK(host6 == "::1");
  CHECK(serv6 == "22");
  auto named = lp.run_until_complete(lp.getnameinfo(loop::SocketAddress::from_ip("127.0.0.1", 1)));
  CHECK_FALSE(named.first.empty());  // "localhost" from /etc/hosts, or the number
  CHECK_THROWS_AS(lp.run_until_complete(lp.getnameinfo(loop::SocketAddress::from_ip("127.0.0.1", 1),
                                                       NI_NAMEREQD | NI_NUMERICHOST)),
                  loop::GaiError);
  lp.close();
}

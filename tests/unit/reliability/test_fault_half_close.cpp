// Half-close both ways, libloop on both ends: the client sends and write_eof()s; the server
// (eof_received -> true: stays half-open) then sends 4 MiB after the client's EOF — more than
// the socket buffers, so it goes through the transport's write buffer — and write_eof()s in
// turn, then close()s. Every byte arrives both ways, each side sees exactly one EOF, and both
// connections end with connection_lost(null).
#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <memory>
#include <string>

#include "io_test_support.hpp"
#include "transport_helpers.hpp"

using test::RecordingProtocol;

TEST_CASE("half-close both ways: data after each side's EOF, clean close on both") {
  loop::EventLoop lp;
  const std::string request = iotest::pattern(300 * 1024);
  // Built in two steps: GCC 12 -O2 warns falsely (-Warray-bounds) on pattern(...) + "end".
  std::string answer = iotest::pattern(4 * 1024 * 1024);
  answer.append("end");
  auto server_side = std::make_shared<RecordingProtocol>();
  server_side->on_eof = [&] {
    // The client can no longer write, we still can.
    server_side->transport->write(answer);
    server_side->transport->write_eof();
    // As in asyncio, a half-open transport stays open until its protocol closes it; close()
    // still sends what is buffered first.
    server_side->transport->close();
    return true;
  };
  auto client_side = std::make_shared<RecordingProtocol>();
  auto main = [&]() -> loop::Coroutine<void> {
    auto srv = co_await lp.create_server([&] { return server_side; }, "127.0.0.1", 0);
    int port = srv->sockets().at(0).port();
    auto [t, p] = co_await lp.create_connection([&] { return client_side; }, "127.0.0.1", port);
    CHECK(t->can_write_eof());
    t->write(request);
    t->write_eof();
    for (int i = 0; i < 2000 && !(client_side->lost && server_side->lost); ++i)
      co_await loop::sleep(0.005);
    srv->close();
    co_await srv->wait_closed();
  };
  lp.run_until_complete(main());
  REQUIRE(client_side->lost);
  REQUIRE(server_side->lost);
  CHECK(server_side->received == request);
  CHECK(client_side->received.size() == answer.size());
  CHECK(client_side->received == answer);
  CHECK(server_side->events == std::vector<std::string>{"connection_made", "data_received",
                                                        "eof_received", "connection_lost"});
  CHECK(client_side->events == std::vector<std::string>{"connection_made", "data_received",
                                                        "eof_received", "connection_lost"});
  CHECK(server_side->lost_error == nullptr);
  CHECK(client_side->lost_error == nullptr);
  lp.close();
}

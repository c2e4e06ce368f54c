// Load: 10,000 concurrent connections to a libloop echo server (create_server), from a Python
// asyncio client in another process (one process could not hold both ends: 20,000 descriptors
// is the hard limit here). All connections are opened and held at once, then every one sends
// 2 KiB of its own pseudo-random bytes and checks the echo byte for byte. Bounded: 90 s.
// (When loopctl echo-server lands, the same client runs against it in tests/e2e.)
#include <sys/resource.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "python_script_peer.hpp"

namespace {

const char* kClient = R"PY(
import asyncio, json, random, sys
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
async def main():
    connecting = asyncio.Semaphore(256)   # the listen backlog, not the number held
    async def connect():
        async with connecting:
            return await asyncio.open_connection('127.0.0.1', port)
    conns = await asyncio.gather(*(connect() for _ in range(n)), return_exceptions=True)
    held = [c for c in conns if not isinstance(c, BaseException)]
    async def exchange(i, r, w):
        data = random.Random(i).randbytes(size)
        w.write(data)
        await w.drain()
        return await r.readexactly(size) == data
    results = await asyncio.gather(*(exchange(i, r, w) for i, (r, w) in enumerate(held)),
                                   return_exceptions=True)
    for r, w in held:
        w.close()
    await asyncio.gather(*(w.wait_closed() for r, w in held), return_exceptions=True)
    errors = [repr(x) for x in list(conns) + list(results) if isinstance(x, BaseException)]
    print(json.dumps({"held": len(held), "intact": sum(1 for x in results if x is True),
                      "errors": len(errors), "first_errors": errors[:3]}), flush=True)
asyncio.run(main())
)PY";

struct Echo : loop::Protocol {
  loop::Transport* t = nullptr;
  int* live;
  int* peak;
  int* lost_with_error;
  std::size_t* bytes;
  void connection_made(loop::BaseTransport& tr) override {
    t = dynamic_cast<loop::Transport*>(&tr);
    *peak = std::max(*peak, ++*live);
  }
  void data_received(std::string_view d) override {
    *bytes += d.size();
    t->write(d);
  }
  void connection_lost(std::exception_ptr e) override {
    --*live;
    if (e) ++*lost_with_error;
  }
};

long rss_kib() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

}  // namespace

TEST_CASE("load: 10,000 concurrent connections echoed intact, none lost") {
  rlimit lim{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
  const int n = lim.rlim_cur >= 10100 ? 10000 : static_cast<int>(lim.rlim_cur) - 100;
  const int size = 2048;
  WARN("connections: " << n);
  loop::EventLoop lp;
  int live = 0, peak = 0, lost_with_error = 0, made = 0;
  std::size_t bytes = 0;
  std::string output;
  int status = -1;
  auto main = [&]() -> loop::Coroutine<void> {
    loop::ServerOptions so;
    so.backlog = 1024;
    auto srv = co_await lp.create_server(
        [&] {
          ++made;
          auto e = std::make_shared<Echo>();
          e->live = &live;
          e->peak = &peak;
          e->lost_with_error = &lost_with_error;
          e->bytes = &bytes;
          return e;
        },
        "127.0.0.1", 0, so);
    int port = srv->sockets().at(0).port();
    test::PythonPeer client(kClient,
                            {std::to_string(port), std::to_string(n), std::to_string(size)});
    double deadline = lp.time() + 90;
    while (lp.time() < deadline) {
      int st = 0;
      if (::waitpid(client.pid(), &st, WNOHANG) == client.pid()) {
        status = st;
        break;
      }
      co_await loop::sleep(0.05);
    }
    if (status == -1) co_return;  // too slow: the client is killed by its destructor
    output = client.finish();     // reads what it printed (waitpid already reaped it)
    for (int i = 0; i < 500 && live > 0; ++i) co_await loop::sleep(0.01);
    srv->close();
    co_await srv->wait_closed();
  };
  long rss_before = rss_kib();
  lp.run_until_complete(main());
  long rss_after = rss_kib();
  REQUIRE(status != -1);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  INFO("client said: " << output);
  auto report = nlohmann::json::parse(output);
  CHECK(report["held"] == n);
  CHECK(report["intact"] == n);
  CHECK(report["errors"] == 0);
  CHECK(made == n);
  CHECK(peak == n);  // all held at once
  CHECK(live == 0);  // every one closed
  CHECK(lost_with_error == 0);
  CHECK(bytes == static_cast<std::size_t>(n) * size);
  WARN("server RSS " << rss_before << " KiB before, " << rss_after << " KiB after, peak live "
                     << peak);
  lp.close();
}

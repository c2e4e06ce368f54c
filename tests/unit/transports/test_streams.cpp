// Streams: open_connection / start_server with StreamReader and StreamWriter, against
// Python's asyncio streams as the peer where one is needed.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <loop/loop.hpp>

#include "python_script_peer.hpp"
#include "transport_helpers.hpp"

using test::PythonPeer;

TEST_CASE("readline, readexactly, read to EOF, IncompleteReadError from a Python peer") {
  PythonPeer peer(R"(
import asyncio
async def handle(r, w):
    w.write(b'first line\nsecond line\n' + b'0123456789' + b'tail')
    await w.drain(); w.close()
async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(30)
asyncio.run(main())
)");
  int port = peer.port();
  loop::EventLoop lp;
  auto main = [&]() -> loop::Coroutine<void> {
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
    std::string got1 = co_await r->readline();
    REQUIRE(got1 == "first line\n");
    std::string got2 = co_await r->readuntil("line\n");
    REQUIRE(got2 == "second line\n");
    std::string got3 = co_await r->readexactly(10);
    REQUIRE(got3 == "0123456789");
    try {
      co_await r->readexactly(10);
      FAIL("read 10 bytes out of 4");
    } catch (const loop::IncompleteReadError& e) {
      REQUIRE(e.partial == "tail");
      REQUIRE(e.expected == 10);
    }
    REQUIRE(r->at_eof());
    std::string got4 = co_await r->read();
    REQUIRE(got4 == "");
    std::string got5 = co_await r->readline();
    REQUIRE(got5 == "");
    w->close();
    co_await w->wait_closed();
  };
  lp.run_until_complete(main());
}

TEST_CASE("start_server echo with a Python asyncio client, drain under load") {
  loop::EventLoop lp;
  int handled = 0;
  std::shared_ptr<loop::Server> srv;
  auto start = [&]() -> loop::Coroutine<int> {
    srv = co_await loop::start_server(
        [&](std::shared_ptr<loop::StreamReader> r,
            std::shared_ptr<loop::StreamWriter> w) -> loop::Coroutine<void> {
          ++handled;
          for (;;) {
            std::string line = co_await r->readline();
            if (line.empty()) break;
            w->write(line);
            co_await w->drain();
          }
          w->close();
          co_await w->wait_closed();
        },
        "127.0.0.1", 0);
    co_return srv->sockets().at(0).port();
  };
  int port = lp.run_until_complete(start());
  PythonPeer peer(R"(
import asyncio, sys
async def main(port):
    r, w = await asyncio.open_connection('127.0.0.1', port)
    lines = [b'%d %s\n' % (i, b'x' * (i % 1000)) for i in range(20000)]
    async def send():  # concurrently with reading, or both sides' drains could wait forever
        for l in lines:
            w.write(l); await w.drain()
        w.write_eof()
    t = asyncio.create_task(send())
    got = await r.read(); await t
    print('ok' if got == b''.join(lines) else 'mismatch %d' % len(got), flush=True)
asyncio.run(main(int(sys.argv[1])))
)",
                  {std::to_string(port)});
  int status = 0;
  auto wait_peer = [&]() -> loop::Coroutine<void> {
    for (int i = 0; i < 3000 && ::waitpid(peer.pid(), &status, WNOHANG) != peer.pid(); ++i)
      co_await loop::sleep(0.01);
  };
  lp.run_until_complete(wait_peer());
  REQUIRE(peer.readline() == "ok");
  REQUIRE(handled == 1);
  srv->close();
  lp.run_until_complete(srv->wait_closed());
}

TEST_CASE("drain waits for resume_writing when the peer does not read") {
  // The peer reads nothing for 0.5 s.
  PythonPeer peer(test::slow_reader_peer("0.5"));
  int port = peer.port();
  loop::EventLoop lp;
  std::size_t max_buffered = 0;
  auto main = [&]() -> loop::Coroutine<void> {
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
    std::string block(256 * 1024, 'd');
    double t0 = lp.time();
    double first_slow_drain = -1;
    for (int i = 0; i < 80; ++i) {  // 20 MiB
      w->write(block);
      max_buffered = std::max(max_buffered, w->transport()->get_write_buffer_size());
      double before = lp.time();
      co_await w->drain();
      if (first_slow_drain < 0 && lp.time() - before > 0.2) first_slow_drain = before - t0;
    }
    REQUIRE(first_slow_drain >= 0);  // some drain waited for the reader
    w->close();
    co_await w->wait_closed();
  };
  lp.run_until_complete(main());
  // drain kept the buffer to about one write above the high-water mark.
  REQUIRE(max_buffered <= 64 * 1024 + 256 * 1024);
  REQUIRE(peer.readline() == std::to_string(80 * 256 * 1024));
}

TEST_CASE("drain() is checked when awaited, and converts to a Coroutine for a Task") {
  // As asyncio's drain coroutine: nothing is decided when drain() is called. The peer stops
  // reading before each block, so that each one is mostly left in the transport's buffer
  // (a reader that kept up took all but 6 KiB of a block in one send, now and then).
  constexpr std::size_t kBlock = 8 << 20;  // far more than the socket buffers take
  PythonPeer peer(test::pausing_reader_peer("0.3", kBlock));
  int port = peer.port();
  loop::EventLoop lp;
  std::size_t buffered_early = 0, after_early = 0, buffered_task = 0, after_task = 0;
  auto main = [&]() -> loop::Coroutine<void> {
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
    auto early = w->drain();  // made while nothing is buffered
    w->write(std::string(kBlock, 'a'));
    buffered_early = w->transport()->get_write_buffer_size();
    co_await early;  // writing is paused now: this waits for resume_writing
    after_early = w->transport()->get_write_buffer_size();

    w->write(std::string(kBlock, 'b'));
    buffered_task = w->transport()->get_write_buffer_size();
    loop::Coroutine<void> coro = w->drain();
    co_await lp.create_task(std::move(coro));
    after_task = w->transport()->get_write_buffer_size();
    w->close();
    co_await w->wait_closed();
  };
  lp.run_until_complete(main());
  CHECK(buffered_early > 64 * 1024);
  CHECK(after_early <= 64 * 1024);  // the default high-water mark
  CHECK(buffered_task > 64 * 1024);
  CHECK(after_task <= 64 * 1024);
  REQUIRE(peer.readline() == std::to_string(2 * kBlock));
}

TEST_CASE("readuntil over the limit: LimitOverrunError, readline: std::invalid_argument") {
  loop::EventLoop lp;
  std::string path = "@libloop-streams-" + std::to_string(::getpid());
  auto main = [&]() -> loop::Coroutine<void> {
    auto srv = co_await loop::start_unix_server(
        [](std::shared_ptr<loop::StreamReader>,
           std::shared_ptr<loop::StreamWriter> w) -> loop::Coroutine<void> {
          w->write(std::string(100, 'a') + "\n" + "short\n" + std::string(100, 'b'));
          w->write_eof();
          co_return;
        },
        path);
    auto [r, w] = co_await loop::open_unix_connection(path, {}, 64);
    REQUIRE(r->limit() == 64);
    try {
      co_await r->readuntil("\n");
      FAIL("no LimitOverrunError");
    } catch (const loop::LimitOverrunError& e) {
      REQUIRE(e.consumed == 100);
    }
    // The data stays buffered: readline drops the over-long line and reports it.
    bool refused = false;
    try {
      co_await r->readline();
    } catch (const std::invalid_argument&) {
      refused = true;
    }
    REQUIRE(refused);
    std::string got6 = co_await r->readline();
    REQUIRE(got6 == "short\n");
    try {
      co_await r->readuntil("\n");
      FAIL("no error");
    } catch (const loop::LimitOverrunError&) {
      // 100 'b' without a separator also exceeds the limit
    } catch (const loop::IncompleteReadError& e) {
      REQUIRE(e.partial == std::string(100, 'b'));
    }
    w->close();
    srv->close();
  };
  lp.run_until_complete(main());
}

// asyncio's _wait_for_data: one waiter at a time, and a waiter that was cancelled leaves the
// reader free for the next read (its finally clears _waiter). Fed by hand, no transport.
TEST_CASE("a second concurrent read is refused; a cancelled read leaves the reader usable") {
  loop::EventLoop lp;
  auto reader = std::make_shared<loop::StreamReader>(lp);
  std::string first, refused;
  auto read_into = [](std::shared_ptr<loop::StreamReader> r,
                      std::string& out) -> loop::Coroutine<void> { out = co_await r->read(100); };
  auto second_read = [](std::shared_ptr<loop::StreamReader> r,
                        std::string& error) -> loop::Coroutine<void> {
    try {
      co_await r->readline();
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
  };
  auto t1 = lp.create_task(read_into(reader, first));
  auto t2 = lp.create_task(second_read(reader, refused));
  lp.call_later(0.01, [&] { reader->feed_data("hello"); });
  lp.run_until_complete(t2);
  CHECK(refused ==
        "readuntil() called while another coroutine is already waiting for "
        "incoming data");
  lp.run_until_complete(t1);
  CHECK(first == "hello");

  // Cancelled while it waits: CancelledError in the reader, and the next read works.
  std::string unused, after;
  auto t3 = lp.create_task(read_into(reader, unused));
  lp.call_soon([&] { t3.cancel(); });
  CHECK_THROWS_AS(lp.run_until_complete(t3), loop::CancelledError);
  CHECK(unused.empty());
  auto t4 = lp.create_task(read_into(reader, after));
  lp.call_soon([&] { reader->feed_data("again"); });
  lp.run_until_complete(t4);
  CHECK(after == "again");
}

// StreamWriter::write(std::move(s)) hands s's memory to the reader for the next data: an
// echo then allocates nothing per message. The data itself must not change.
TEST_CASE("a string written by move becomes the reader's storage, and only when it may") {
  loop::EventLoop lp;
  auto reader = std::make_shared<loop::StreamReader>(lp, 4096);
  // The string as read() returns it, and where its characters are (run_until_complete copies).
  struct Read {
    std::string data;
    const char* memory;
    std::size_t capacity;
  };
  auto read = [&](long n) {
    auto body = [](std::shared_ptr<loop::StreamReader> r, long k) -> loop::Coroutine<Read> {
      std::string data = co_await r->read(k);
      const char* memory = data.data();
      std::size_t capacity = data.capacity();
      co_return Read{std::move(data), memory, capacity};
    };
    return lp.run_until_complete(body(reader, n));
  };

  std::string storage(1000, 'x');
  const char* memory = storage.data();
  reader->reuse_storage(std::move(storage));
  reader->feed_data("abc");
  Read got = read(100);
  CHECK(got.data == "abc");
  CHECK(got.memory == memory);  // fed into the kept memory, then moved out without a copy
  CHECK(got.capacity >= 1000);

  // Not while data is buffered: that data stays as it was, the string is left to its owner.
  reader->feed_data("buffered");
  std::string other(500, 'y');
  reader->reuse_storage(std::move(other));
  CHECK(read(100).data == "buffered");
  CHECK(other == std::string(500, 'y'));

  // Not more than the limit: an idle stream holds at most one full read.
  std::string big(8192, 'z');
  const char* big_memory = big.data();
  reader->reuse_storage(std::move(big));
  reader->feed_data(std::string(100, 's'));  // longer than a string holds in itself
  got = read(100);
  CHECK(got.data == std::string(100, 's'));
  CHECK(got.memory != big_memory);
}

TEST_CASE("an echo that writes by move returns what the peer sent, message after message") {
  loop::EventLoop lp;
  std::shared_ptr<loop::Server> srv;
  auto start = [&]() -> loop::Coroutine<int> {
    srv = co_await loop::start_server(
        [](std::shared_ptr<loop::StreamReader> r,
           std::shared_ptr<loop::StreamWriter> w) -> loop::Coroutine<void> {
          for (;;) {
            std::string data = co_await r->read(4096);
            if (data.empty()) break;
            w->write(std::move(data));
            co_await w->drain();
          }
          w->write("bye");  // a literal takes the string_view overload
          w->close();
        },
        "127.0.0.1", 0);
    co_return srv->sockets().at(0).port();
  };
  int port = lp.run_until_complete(start());
  auto client = [&]() -> loop::Coroutine<std::string> {
    auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
    std::string echoed;
    for (int i = 0; i < 50; ++i) {
      // Sizes that grow and shrink, so a kept buffer holds longer old data than the next one.
      std::string message(static_cast<std::size_t>(1 + (i * 397) % 3000),
                          static_cast<char>('a' + i % 26));
      w->write(message);
      echoed += co_await r->readexactly(message.size());
      CHECK(echoed.substr(echoed.size() - message.size()) == message);
    }
    w->write_eof();
    echoed += co_await r->read();
    w->close();
    co_return echoed;
  };
  std::string echoed = lp.run_until_complete(client());
  CHECK(echoed.ends_with("bye"));
  srv->close();
  lp.run_until_complete(srv->wait_closed());
}

// readuntil() whose buffer another reader emptied while it waited: Python's
// `buflen - offset >= seplen` is negative there and it waits again, with its old offset.
TEST_CASE("readuntil after another read emptied the buffer waits again, as asyncio") {
  loop::EventLoop lp;
  auto reader = std::make_shared<loop::StreamReader>(lp);
  std::string result, read_result;
  auto main = [&]() -> loop::Coroutine<void> {
    reader->feed_data("abcde");
    auto until = [&]() -> loop::Coroutine<void> { result = co_await reader->readuntil("XYZ"); };
    auto t = lp.create_task(until());
    co_await loop::sleep(0);
    reader->feed_data("f");
    read_result = co_await reader->read(100);
    co_await loop::sleep(0);
    reader->feed_data("gXYZ");
    co_await loop::sleep(0);
    reader->feed_data("hXYZ");
    co_await t;
  };
  lp.run_until_complete(main());
  CHECK(read_result == "abcdef");
  CHECK(result == "gXYZhXYZ");  // what asyncio 3.11 returns, its offset being stale
}

TEST_CASE("readuntil at EOF: IncompleteReadError with no expected size") {
  loop::EventLoop lp;
  auto reader = std::make_shared<loop::StreamReader>(lp);
  reader->feed_data("abc");
  reader->feed_eof();
  auto until = [&]() -> loop::Coroutine<void> { co_await reader->readuntil("\n"); };
  try {
    lp.run_until_complete(until());
    FAIL("no IncompleteReadError");
  } catch (const loop::IncompleteReadError& e) {
    CHECK(e.partial == "abc");
    CHECK_FALSE(e.expected.has_value());
    CHECK(std::string(e.what()) == "3 bytes read on a total of undefined expected bytes");
  }
}

// asyncio pauses any read transport when more than 2 * limit bytes are buffered: a read
// pipe's too, not only a socket's.
TEST_CASE("a stream on a read pipe pauses reading when its buffer is full") {
  loop::EventLoop lp;
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  auto reader = std::make_shared<loop::StreamReader>(lp, 16);
  auto main = [&]() -> loop::Coroutine<void> {
    auto factory = [&] { return std::make_shared<loop::StreamReaderProtocol>(lp, reader); };
    auto [t, p] = co_await lp.connect_read_pipe(factory, fds[0]);
    REQUIRE(::write(fds[1], std::string(100, 'x').data(), 100) == 100);
    co_await loop::sleep(0.05);
    CHECK_FALSE(t->is_reading());
    REQUIRE(::write(fds[1], std::string(100, 'y').data(), 100) == 100);
    co_await loop::sleep(0.05);
    std::string first = co_await reader->read(1000);
    CHECK(first == std::string(100, 'x'));  // the rest waited in the pipe
    ::close(fds[1]);
    std::string rest = co_await reader->read();
    CHECK(rest == std::string(100, 'y'));
    t->close();
  };
  lp.run_until_complete(main());
}

// A read still waiting when the user lets go of both the reader and the writer: the
// protocol lets go of the reader at connection_lost, and the read, woken by it, resumes in
// the reader after that (a Python coroutine keeps its reader alive; ASan checks this one).
TEST_CASE("a read whose reader and writer the user dropped finishes at EOF") {
  loop::EventLoop lp;
  std::shared_ptr<loop::Server> srv;
  auto start = [&]() -> loop::Coroutine<int> {
    srv = co_await loop::start_server(
        [](std::shared_ptr<loop::StreamReader>,
           std::shared_ptr<loop::StreamWriter> w) -> loop::Coroutine<void> {
          co_await loop::sleep(0.05);
          w->close();
        },
        "127.0.0.1", 0);
    co_return srv->sockets().at(0).port();
  };
  int port = lp.run_until_complete(start());
  std::string got = "unset";
  auto main = [&]() -> loop::Coroutine<void> {
    auto task = [&]() -> loop::Coroutine<loop::Task<std::string>> {
      auto [r, w] = co_await loop::open_connection("127.0.0.1", port);
      co_return lp.create_task(r->read(100));  // r and w go with this frame
    };
    auto read = co_await task();
    got = co_await read;
  };
  lp.run_until_complete(main());
  CHECK(got.empty());
  srv->close();
  lp.run_until_complete(srv->wait_closed());
}

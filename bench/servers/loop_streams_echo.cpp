// loop_streams_echo: the streams (coroutine) echo server on libloop, as uvloop's vmbench writes
// it: start_server, then per client `data = co_await reader->read(256 KiB); writer->write(data);
// co_await writer->drain();` until EOF.
//   loop_streams_echo [--port P] [--unix PATH]   prints "listening on 127.0.0.1:PORT"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <loop/loop.hpp>
#include <memory>
#include <string>

namespace {

loop::Coroutine<void> echo_client(std::shared_ptr<loop::StreamReader> reader,
                                  std::shared_ptr<loop::StreamWriter> writer) {
  // asyncio sets TCP_NODELAY on every TCP transport; libloop's transports do not yet.
  std::any fd = writer->get_extra_info("socket");
  if (auto* p = std::any_cast<int>(&fd)) {
    int one = 1;
    ::setsockopt(*p, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  try {
    for (;;) {
      std::string data = co_await reader->read(256 * 1024);  // as epoll_echo.c's buffer
      if (data.empty()) break;
      writer->write(std::move(data));  // its memory goes back to the reader
      co_await writer->drain();
    }
  } catch (const std::exception&) {
    // A reset peer ends this client only.
  }
  writer->close();
}

loop::Coroutine<void> serve(loop::EventLoop& lp, unsigned short port, std::string unix_path) {
  loop::ServerOptions options;
  options.backlog = 4096;
  // Not `cond ? co_await a : co_await b`: GCC 12 destroys the result of such a conditional
  // twice, one reference too many released (the server was freed while still held).
  std::shared_ptr<loop::Server> server;
  if (unix_path.empty())
    server = co_await loop::start_server(echo_client, "127.0.0.1", port, options);
  else
    server = co_await loop::start_unix_server(echo_client, unix_path, options);
  std::printf("listening on %s\n", server->sockets().at(0).to_string().c_str());
  std::fflush(stdout);
  lp.add_signal_handler(SIGINT, [server] { server->close(); });
  lp.add_signal_handler(SIGTERM, [server] { server->close(); });
  try {
    co_await server->serve_forever();
  } catch (const loop::CancelledError&) {
    // close() from the signal handler ends serve_forever
  }
}

}  // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  std::string unix_path;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--port") && i + 1 < argc) {
      port = static_cast<unsigned short>(std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--unix") && i + 1 < argc) {
      unix_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: loop_streams_echo [--port P] [--unix PATH]\n");
      return 2;
    }
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  loop::EventLoop lp;
  lp.run_until_complete(serve(lp, port, unix_path));
  lp.close();
  return 0;
}

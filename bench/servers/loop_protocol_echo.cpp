// loop_protocol_echo: the protocol echo server on libloop (create_server / create_unix_server),
// as uvloop's vmbench writes it: data_received writes the data straight back. The figure
// `loopctl echo-server` should reach; it runs here until loopctl has that subcommand.
//   loop_protocol_echo [--port P] [--unix PATH] [--trace FILE]
// prints "listening on 127.0.0.1:PORT"; --trace writes the JSON Lines trace (what tracing costs).
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

// asyncio sets TCP_NODELAY on every TCP transport (selector_events._set_nodelay); libloop's
// transports do not yet, so the bench servers do it (a no-op error on unix sockets).
void set_nodelay(std::optional<int> fd) {
  int one = 1;
  if (fd) ::setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

class EchoProtocol : public loop::Protocol {
 public:
  void connection_made(loop::BaseTransport& transport) override {
    transport_ = dynamic_cast<loop::Transport*>(&transport);
    set_nodelay(transport.extra<int>("socket"));
  }
  void data_received(std::string_view data) override { transport_->write(data); }
  void connection_lost(std::exception_ptr) override { transport_ = nullptr; }

 private:
  loop::Transport* transport_ = nullptr;
};

loop::Coroutine<void> serve(loop::EventLoop& lp, unsigned short port, std::string unix_path) {
  auto factory = [] { return std::make_shared<EchoProtocol>(); };
  loop::ServerOptions options;
  options.backlog = 4096;
  // Not `cond ? co_await a : co_await b`: GCC 12 destroys the result of such a conditional
  // twice, one reference too many released (the server was freed while still held).
  std::shared_ptr<loop::Server> server;
  if (unix_path.empty())
    server = co_await lp.create_server(factory, "127.0.0.1", port, options);
  else
    server = co_await lp.create_unix_server(factory, unix_path, options);
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
  std::string unix_path, trace;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--port") && i + 1 < argc) {
      port = static_cast<unsigned short>(std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--unix") && i + 1 < argc) {
      unix_path = argv[++i];
    } else if (!std::strcmp(argv[i], "--trace") && i + 1 < argc) {
      trace = argv[++i];
    } else {
      std::fprintf(stderr, "usage: loop_protocol_echo [--port P] [--unix PATH] [--trace FILE]\n");
      return 2;
    }
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  loop::EventLoop lp;
  if (!trace.empty()) lp.set_tracer(loop::open_tracer(trace, "jsonl"));
  lp.run_until_complete(serve(lp, port, unix_path));
  lp.close();
  if (lp.tracer()) lp.tracer()->finish();
  return 0;
}

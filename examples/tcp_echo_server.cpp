// TCP echo server protocol (the asyncio docs' "TCP Echo Server Protocol" example).
// Usage: tcp_echo_server [PORT]   (listens on 127.0.0.1; Ctrl-C stops it)
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <loop/loop.hpp>
#include <string>

class EchoServerProtocol : public loop::Protocol {
 public:
  void connection_made(loop::BaseTransport& transport) override {
    transport_ = dynamic_cast<loop::Transport*>(&transport);
    auto peer = transport.extra<loop::SocketAddress>("peername");
    std::printf("Connection from %s\n", peer ? peer->to_string().c_str() : "?");
  }
  void data_received(std::string_view data) override {
    std::printf("Data received: %.*s\n", static_cast<int>(data.size()), data.data());
    std::printf("Send: %.*s\n", static_cast<int>(data.size()), data.data());
    transport_->write(data);
    std::printf("Close the client socket\n");
    transport_->close();
  }

 private:
  loop::Transport* transport_ = nullptr;
};

int main(int argc, char** argv) {
  int port = argc > 1 ? std::atoi(argv[1]) : 8888;
  loop::EventLoop lp;
  auto main_coro = [&]() -> loop::Coroutine<void> {
    auto factory = [] { return std::make_shared<EchoServerProtocol>(); };
    auto server = co_await lp.create_server(factory, "127.0.0.1", port);
    std::printf("Serving on %s\n", server->sockets().at(0).to_string().c_str());
    std::fflush(stdout);
    lp.add_signal_handler(SIGINT, [server] { server->close(); });
    lp.add_signal_handler(SIGTERM, [server] { server->close(); });
    loop::ServerGuard guard(server);  // `async with server:`
    try {
      co_await server->serve_forever();
    } catch (const loop::CancelledError&) {
      // close() from the signal handler ends serve_forever
    }
  };
  lp.run_until_complete(main_coro());
  lp.close();
}

// TCP echo client protocol (the asyncio docs' "TCP Echo Client Protocol" example).
// Usage: tcp_echo_client [PORT] [MESSAGE]
#include <cstdio>
#include <cstdlib>
#include <loop/loop.hpp>
#include <string>

class EchoClientProtocol : public loop::Protocol {
 public:
  EchoClientProtocol(std::string message, loop::Future<void> on_con_lost)
      : message_(std::move(message)), on_con_lost_(std::move(on_con_lost)) {}

  void connection_made(loop::BaseTransport& transport) override {
    dynamic_cast<loop::Transport&>(transport).write(message_);
    std::printf("Data sent: %s\n", message_.c_str());
  }
  void data_received(std::string_view data) override {
    std::printf("Data received: %.*s\n", static_cast<int>(data.size()), data.data());
  }
  void connection_lost(std::exception_ptr) override {
    std::printf("The server closed the connection\n");
    if (!on_con_lost_.done()) on_con_lost_.set_result();
  }

 private:
  std::string message_;
  loop::Future<void> on_con_lost_;
};

int main(int argc, char** argv) {
  int port = argc > 1 ? std::atoi(argv[1]) : 8888;
  std::string message = argc > 2 ? argv[2] : "Hello World!";
  loop::EventLoop lp;
  auto main_coro = [&]() -> loop::Coroutine<void> {
    loop::Future<void> on_con_lost = lp.create_future<void>();
    auto factory = [&] { return std::make_shared<EchoClientProtocol>(message, on_con_lost); };
    auto [transport, protocol] = co_await lp.create_connection(factory, "127.0.0.1", port);
    // Wait until the protocol signals that the connection is lost, then close the transport.
    co_await on_con_lost;
    transport->close();
  };
  try {
    lp.run_until_complete(main_coro());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tcp_echo_client: %s\n", e.what());
    return 1;
  }
  lp.close();
}

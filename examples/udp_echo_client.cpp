// "UDP Echo Client Protocol" from the asyncio docs (Transports and Protocols), with libloop.
// Usage: udp_echo_client [PORT=9999] [MESSAGE="Hello World!"]
#include <cstdio>
#include <cstdlib>
#include <loop/loop.hpp>
#include <memory>
#include <string>

class EchoClientProtocol : public loop::DatagramProtocol {
 public:
  EchoClientProtocol(std::string message, loop::Future<bool> on_con_lost)
      : message_(std::move(message)), on_con_lost_(std::move(on_con_lost)) {}

  void connection_made(loop::BaseTransport& transport) override {
    transport_ = dynamic_cast<loop::DatagramTransport*>(&transport);
    std::printf("Send: %s\n", message_.c_str());
    transport_->sendto(message_);
  }
  void datagram_received(std::string_view data, const loop::SocketAddress&) override {
    std::printf("Received: %.*s\n", static_cast<int>(data.size()), data.data());
    std::printf("Close the socket\n");
    transport_->close();
  }
  void error_received(std::exception_ptr exc) override {
    std::printf("Error received: %s\n", loop::describe_exception(exc).c_str());
  }
  void connection_lost(std::exception_ptr) override {
    std::printf("Connection closed\n");
    on_con_lost_.set_result(true);
  }

 private:
  std::string message_;
  loop::Future<bool> on_con_lost_;
  loop::DatagramTransport* transport_ = nullptr;
};

loop::Coroutine<int> run(unsigned short port, std::string message) {
  auto& lp = loop::get_running_loop();
  auto on_con_lost = lp.create_future<bool>();
  loop::DatagramEndpointOptions options;
  options.remote_addr = loop::SocketAddress::from_ip("127.0.0.1", port);
  auto [transport, protocol] = co_await lp.create_datagram_endpoint(
      [&] { return std::make_shared<EchoClientProtocol>(message, on_con_lost); }, options);
  try {
    co_await on_con_lost;
  } catch (...) {
    transport->close();
    throw;
  }
  transport->close();
  co_return 0;
}

int main(int argc, char** argv) {
  unsigned short port = argc > 1 ? static_cast<unsigned short>(std::atoi(argv[1])) : 9999;
  std::string message = argc > 2 ? argv[2] : "Hello World!";
  loop::EventLoop lp;
  return lp.run_until_complete(run(port, message));
}

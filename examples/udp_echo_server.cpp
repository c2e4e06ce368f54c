// "UDP Echo Server Protocol" from the asyncio docs (Transports and Protocols), with libloop.
// Usage: udp_echo_server [PORT=9999] [SECONDS=3600]
#include <cstdio>
#include <cstdlib>
#include <loop/loop.hpp>
#include <memory>
#include <string>

class EchoServerProtocol : public loop::DatagramProtocol {
 public:
  void connection_made(loop::BaseTransport& transport) override {
    transport_ = dynamic_cast<loop::DatagramTransport*>(&transport);
  }
  void datagram_received(std::string_view data, const loop::SocketAddress& addr) override {
    std::string message(data);
    std::printf("Received '%s' from %s\n", message.c_str(), addr.to_string().c_str());
    std::printf("Send '%s' to %s\n", message.c_str(), addr.to_string().c_str());
    std::fflush(stdout);
    transport_->sendto(data, addr);
  }

 private:
  loop::DatagramTransport* transport_ = nullptr;
};

loop::Coroutine<int> serve(unsigned short port, double seconds) {
  std::printf("Starting UDP server\n");
  std::fflush(stdout);
  auto& lp = loop::get_running_loop();
  // One endpoint serves all clients.
  loop::DatagramEndpointOptions options;
  options.local_addr = loop::SocketAddress::from_ip("127.0.0.1", port);
  auto [transport, protocol] = co_await lp.create_datagram_endpoint(
      [] { return std::make_shared<EchoServerProtocol>(); }, options);
  try {
    co_await loop::sleep(seconds);  // serve for an hour by default
  } catch (...) {
    transport->close();
    throw;
  }
  transport->close();
  co_return 0;
}

int main(int argc, char** argv) {
  unsigned short port = argc > 1 ? static_cast<unsigned short>(std::atoi(argv[1])) : 9999;
  double seconds = argc > 2 ? std::atof(argv[2]) : 3600;
  loop::EventLoop lp;
  return lp.run_until_complete(serve(port, seconds));
}

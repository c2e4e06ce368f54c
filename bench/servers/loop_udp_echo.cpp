// loop_udp_echo: a UDP echo server on libloop's create_datagram_endpoint (the asyncio docs' UDP
// echo protocol, without the printing).
//   loop_udp_echo [--port P]   prints "listening on 127.0.0.1:PORT"
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <loop/loop.hpp>
#include <memory>

namespace {

class EchoProtocol : public loop::DatagramProtocol {
 public:
  void connection_made(loop::BaseTransport& transport) override {
    transport_ = dynamic_cast<loop::DatagramTransport*>(&transport);
  }
  void datagram_received(std::string_view data, const loop::SocketAddress& addr) override {
    transport_->sendto(data, addr);
  }

 private:
  loop::DatagramTransport* transport_ = nullptr;
};

loop::Coroutine<void> serve(loop::EventLoop& lp, unsigned short port) {
  loop::DatagramEndpointOptions options;
  options.local_addr = loop::SocketAddress::from_ip("127.0.0.1", port);
  auto [transport, protocol] = co_await lp.create_datagram_endpoint(
      [] { return std::make_shared<EchoProtocol>(); }, options);
  auto name = transport->extra<loop::SocketAddress>("sockname");
  std::printf("listening on %s\n", name ? name->to_string().c_str() : "?");
  std::fflush(stdout);
  auto stopped = lp.create_future<void>();
  lp.add_signal_handler(SIGTERM, [stopped] {
    if (!stopped.done()) stopped.set_result();
  });
  lp.add_signal_handler(SIGINT, [stopped] {
    if (!stopped.done()) stopped.set_result();
  });
  co_await stopped;
  transport->close();
}

}  // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--port") && i + 1 < argc) {
      port = static_cast<unsigned short>(std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: loop_udp_echo [--port P]\n");
      return 2;
    }
  }
  loop::EventLoop lp;
  lp.run_until_complete(serve(lp, port));
  return 0;
}

// loopctl udp-echo-server: create_datagram_endpoint bound to --host/--port; every datagram goes
// back to its sender (asyncio's EchoServerProtocol for UDP); runs until SIGINT or SIGTERM.
#include <cstdio>
#include <system_error>

#include "serve.hpp"

namespace loopctl {
namespace {

// asyncio's UDP echo server protocol: sendto(data, addr) for each datagram received.
class UdpEchoProtocol final : public loop::DatagramProtocol {
 public:
  void connection_made(loop::BaseTransport& t) override {
    transport_ = dynamic_cast<loop::DatagramTransport*>(&t);
  }
  void datagram_received(std::string_view data, const loop::SocketAddress& addr) override {
    transport_->sendto(data, addr);
  }
  // A send that failed (e.g. ICMP port unreachable from a client that went away) concerns
  // that one client only: the server keeps serving the others.
  void error_received(std::exception_ptr) override {}
  void connection_lost(std::exception_ptr) override { transport_ = nullptr; }

 private:
  loop::DatagramTransport* transport_ = nullptr;
};

// Outside the coroutine: GCC 12 miscompiles string literals in coroutine bodies.
[[noreturn]] void throw_bind_error(const std::string& where, std::exception_ptr failed) {
  try {
    std::rethrow_exception(failed);
  } catch (const std::system_error& e) {
    throw RuntimeFailure("cannot listen on " + where + ": " + e.code().message());
  } catch (const std::exception& e) {
    throw RuntimeFailure("cannot listen on " + where + ": " + e.what());
  }
}

void print_bound(const loop::DatagramTransport& t) {
  if (auto addr = t.extra<loop::SocketAddress>("sockname"))
    std::printf("listening on %s\n", addr->to_string().c_str());
  flush_stdout();
}

loop::DatagramEndpointOptions bind_options(const std::string& host, int port) {
  loop::DatagramEndpointOptions opts;
  opts.local_addr = loop::HostPort{host, static_cast<unsigned short>(port)};
  return opts;
}

class UdpEchoServer final : public Command {
 public:
  const char* name() const override { return "udp-echo-server"; }
  const char* description() const override {
    return "Echo each UDP datagram back to its sender (create_datagram_endpoint); runs until "
           "SIGINT or SIGTERM";
  }
  void setup(CLI::App& app) override {
    app.add_option("--host", host_, "The address to bind to")->transform(host_address());
    app.add_option("--port", port_, "The UDP port (0 = any free one, printed)")
        ->check(CLI::Range(0, 65535).description("0-65535"));
    app.add_option("--workers", workers_,
                   "Run N loops on N threads sharing the port with SO_REUSEPORT")
        ->check(CLI::Range(1, 1024).description("1-1024"));
  }

  int run(loop::EventLoop& lp) override {
    if (workers_ > 1 && port_ == 0) port_ = pick_shared_port(host_, SOCK_DGRAM);
    std::string where = Endpoint{Endpoint::Kind::tcp, host_, port_, {}}.to_string();
    return run_workers(lp, workers_,
                       [this, where](int index, loop::EventLoop& wl, loop::Future<int> stop) {
                         return serve(wl, where, index, stop);
                       });
  }

 private:
  loop::Coroutine<int> serve(loop::EventLoop& lp, std::string where, int index,
                             loop::Future<int> stop) {
    auto factory = [] { return std::make_shared<UdpEchoProtocol>(); };
    auto opts = bind_options(host_, port_);
    if (workers_ > 1) opts.reuse_port = true;
    std::shared_ptr<loop::DatagramTransport> transport;
    std::exception_ptr failed;
    try {
      auto endpoint = co_await lp.create_datagram_endpoint(factory, opts);
      transport = endpoint.first;
    } catch (const std::exception&) {
      failed = std::current_exception();
    }
    if (failed) throw_bind_error(where, failed);
    // run_workers installed the signal handlers before the line scripts wait for.
    if (index == 0) print_bound(*transport);
    co_await stop;
    transport->close();
    co_await loop::sleep(0);  // let connection_lost run before the loop closes
    co_return 0;
  }

  std::string host_ = "127.0.0.1";
  int port_ = 8888;
  int workers_ = 1;
};

}  // namespace

std::unique_ptr<Command> make_udp_echo_server() {
  return std::make_unique<UdpEchoServer>();
}

}  // namespace loopctl

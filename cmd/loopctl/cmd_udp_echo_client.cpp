// loopctl udp-echo-client: create_datagram_endpoint connected to ENDPOINT; sends --message
// --count times, prints each echo; exit 1 when an echo does not come back within --timeout
// (or the peer refuses: ICMP port unreachable arrives as error_received(ECONNREFUSED)).
#include <cstdio>
#include <deque>
#include <system_error>

#include "serve.hpp"

namespace loopctl {
namespace {

// Queues what arrives; a waiter (one at a time) is woken by a datagram or an error.
class UdpClientProtocol final : public loop::DatagramProtocol {
 public:
  explicit UdpClientProtocol(loop::EventLoop& lp) : lp_(lp) {}
  void datagram_received(std::string_view data, const loop::SocketAddress&) override {
    received_.emplace_back(data);
    wake();
  }
  void error_received(std::exception_ptr exc) override {
    if (!error_) error_ = exc;
    wake();
  }
  void connection_lost(std::exception_ptr exc) override {
    if (!error_ && exc) error_ = exc;
    wake();
  }

  /// Done once a datagram is queued or an error is known.
  loop::Future<void> next() {
    waiter_ = lp_.create_future<void>();
    if (!received_.empty() || error_) waiter_->set_result();
    return *waiter_;
  }
  std::deque<std::string>& received() { return received_; }
  std::exception_ptr error() const { return error_; }

 private:
  void wake() {
    if (waiter_ && !waiter_->done()) waiter_->set_result();
  }
  loop::EventLoop& lp_;
  std::deque<std::string> received_;
  std::exception_ptr error_;
  std::optional<loop::Future<void>> waiter_;
};

// Outside the coroutine: GCC 12 miscompiles string literals in coroutine bodies.
[[noreturn]] void throw_no_echo(const Endpoint& ep, double timeout) {
  throw RuntimeFailure("no echo from " + ep.to_string() + " within " + format_seconds(timeout) +
                       " s");
}
[[noreturn]] void throw_peer_error(const Endpoint& ep, std::exception_ptr exc) {
  try {
    std::rethrow_exception(exc);
  } catch (const std::system_error& e) {
    throw RuntimeFailure("no echo from " + ep.to_string() + ": " + e.code().message());
  } catch (const std::exception& e) {
    throw RuntimeFailure("no echo from " + ep.to_string() + ": " + e.what());
  }
}
[[noreturn]] void throw_setup_error(const Endpoint& ep, std::exception_ptr exc) {
  try {
    std::rethrow_exception(exc);
  } catch (const std::system_error& e) {
    throw RuntimeFailure("cannot send to " + ep.to_string() + ": " + e.code().message());
  } catch (const std::exception& e) {
    throw RuntimeFailure("cannot send to " + ep.to_string() + ": " + e.what());
  }
}
void print_line(const std::string& s) {
  std::printf("%s\n", s.c_str());
  std::fflush(stdout);
}
loop::DatagramEndpointOptions connect_options(const Endpoint& ep) {
  loop::DatagramEndpointOptions opts;
  opts.remote_addr = loop::HostPort{ep.host, static_cast<unsigned short>(ep.port)};
  return opts;
}

class UdpEchoClient final : public Command {
 public:
  const char* name() const override { return "udp-echo-client"; }
  const char* description() const override {
    return "Send --message to ENDPOINT over UDP --count times, print each echo; exit 1 if an "
           "echo does not arrive within --timeout or does not match";
  }
  void setup(CLI::App& app) override {
    app.add_option("endpoint", endpoint_, "HOST:PORT or [V6ADDR]:PORT")->required();
    app.add_option("--message", message_, "The message to send (one datagram)");
    app.add_option("--count", count_, "How many datagrams to send")->check(non_negative_number());
    app.add_option("--timeout", timeout_, "Seconds to wait for each echo")
        ->check(positive_number());
  }

  int run(loop::EventLoop& lp) override {
    Endpoint ep = parse_endpoint(endpoint_);
    if (ep.is_unix()) throw UsageError("udp-echo-client takes HOST:PORT or [V6ADDR]:PORT");
    if (message_.empty()) throw UsageError("--message must not be empty");
    return lp.run_until_complete(talk(lp, ep));
  }
  std::string virtual_clock_conflict() const override {
    return timeouts_virtual_clock_conflict(name());
  }

 private:
  loop::Coroutine<int> talk(loop::EventLoop& lp, Endpoint ep) {
    auto factory = [&lp] { return std::make_shared<UdpClientProtocol>(lp); };
    auto opts = connect_options(ep);
    std::shared_ptr<loop::DatagramTransport> transport;
    std::shared_ptr<UdpClientProtocol> protocol;
    std::exception_ptr failed;
    try {
      auto endpoint = co_await lp.create_datagram_endpoint(factory, opts);
      transport = endpoint.first;
      protocol = endpoint.second;
    } catch (const std::exception&) {
      failed = std::current_exception();
    }
    if (failed) throw_setup_error(ep, failed);
    int mismatches = 0;
    std::string first_mismatch;
    std::exception_ptr peer_error;
    bool timed_out = false;
    for (int i = 0; i < count_ && !peer_error && !timed_out; ++i) {
      transport->sendto(message_);
      try {
        co_await loop::wait_for(protocol->next(), timeout_);
      } catch (const loop::TimeoutError&) {
        timed_out = true;
      }
      if (timed_out) break;
      if (protocol->received().empty()) {
        peer_error = protocol->error();
        break;
      }
      std::string echo = std::move(protocol->received().front());
      protocol->received().pop_front();
      print_line(echo);
      // Whole datagrams are compared: one longer than the message sent is a mismatch too.
      if (echo != message_ && mismatches++ == 0)
        first_mismatch = describe_bad_echo(i + 1, message_, echo);
    }
    transport->close();
    co_await loop::sleep(0);  // let connection_lost run before the loop closes
    if (timed_out) throw_no_echo(ep, timeout_);
    if (peer_error) throw_peer_error(ep, peer_error);
    if (mismatches) throw_echo_mismatches(mismatches, count_, first_mismatch);
    co_return 0;
  }

  std::string endpoint_;
  std::string message_ = "Hello World!";
  int count_ = 1;
  double timeout_ = 5;
};

}  // namespace

std::unique_ptr<Command> make_udp_echo_client() {
  return std::make_unique<UdpEchoClient>();
}

}  // namespace loopctl

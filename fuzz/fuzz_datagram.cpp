// Datagram handling: a DatagramProtocol endpoint on a real UDP socket (127.0.0.1) echoing with
// sendto, and one on a unix datagram socketpair, fed the datagrams the input describes.
// Input: "<sizes>\n--\n<bytes>": each size byte b cuts the next b bytes (0: an empty
// datagram), at most 64 datagrams. Checks: every datagram arrives whole, in order, with the
// sender's address, and every echo comes back identical, empty ones included (sendto sends an
// empty datagram, as asyncio 3.13); nothing reaches error_received.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <loop/loop.hpp>
#include <memory>
#include <vector>

#include "fuzz_support.hpp"

namespace {

struct Endpoint : loop::DatagramProtocol {
  loop::DatagramTransport* transport = nullptr;
  bool echo = false;
  std::vector<std::string> received;
  std::vector<loop::SocketAddress> from;
  int errors = 0;
  void connection_made(loop::BaseTransport& t) override {
    transport = dynamic_cast<loop::DatagramTransport*>(&t);
  }
  void datagram_received(std::string_view d, const loop::SocketAddress& addr) override {
    received.emplace_back(d);
    from.push_back(addr);
    if (echo) transport->sendto(d, addr);
  }
  void error_received(std::exception_ptr) override { ++errors; }
};

struct Setup {
  loop::EventLoop lp;
  std::shared_ptr<loop::DatagramTransport> udp_transport, unix_transport;
  std::shared_ptr<Endpoint> udp, unix_ep;
  int peer = -1;       // our UDP socket, talking to `udp`
  int unix_peer = -1;  // the other end of the socketpair
  loop::SocketAddress peer_addr, udp_addr;

  Setup() {
    lp.set_exception_handler([](loop::EventLoop&, const loop::ExceptionContext& ctx) {
      std::fprintf(stderr, "exception handler called: %s\n", ctx.message.c_str());
      std::abort();
    });
    loop::DatagramEndpointOptions o;
    o.local_addr = loop::SocketAddress::from_ip("127.0.0.1", 0);
    std::tie(udp_transport, udp) = lp.run_until_complete(
        lp.create_datagram_endpoint([] { return std::make_shared<Endpoint>(); }, o));
    udp->echo = true;
    udp_addr = std::any_cast<loop::SocketAddress>(udp_transport->get_extra_info("sockname"));

    peer = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    auto any = loop::SocketAddress::from_ip("127.0.0.1", 0);
    FUZZ_CHECK(::bind(peer, any.data(), any.size()) == 0);
    socklen_t len = loop::SocketAddress::capacity();
    FUZZ_CHECK(::getsockname(peer, peer_addr.data(), &len) == 0);
    peer_addr.set_size(len);

    int sv[2];
    FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv) == 0);
    unix_peer = sv[1];
    loop::DatagramEndpointOptions u;
    u.sock = sv[0];
    std::tie(unix_transport, unix_ep) = lp.run_until_complete(
        lp.create_datagram_endpoint([] { return std::make_shared<Endpoint>(); }, u));
  }
};

Setup& setup() {
  static auto* s = new Setup;  // lives for the whole run: one socket set, many inputs
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& s = setup();
  auto [sizes, bytes] = loop::fuzz::split_input(data, size);
  std::vector<std::string> grams;
  std::string_view rest = bytes;
  for (std::size_t i = 0; grams.size() < 64 && (i < sizes.size() || !rest.empty()); ++i) {
    std::size_t n = i < sizes.size() ? static_cast<unsigned char>(sizes[i]) : rest.size();
    n = std::min(n, rest.size());
    grams.emplace_back(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  s.udp->received.clear();
  s.udp->from.clear();
  s.unix_ep->received.clear();
  for (auto& g : grams) {
    FUZZ_CHECK(::sendto(s.peer, g.data(), g.size(), 0, s.udp_addr.data(), s.udp_addr.size()) ==
               static_cast<ssize_t>(g.size()));
    FUZZ_CHECK(::send(s.unix_peer, g.data(), g.size(), 0) == static_cast<ssize_t>(g.size()));
  }
  std::vector<std::string> echoes;
  auto drain_echoes = [&] {
    char buf[70000];
    ssize_t n;
    while ((n = ::recv(s.peer, buf, sizeof buf, 0)) >= 0) echoes.emplace_back(buf, n);
    return echoes.size() >= grams.size() && s.udp->received.size() >= grams.size() &&
           s.unix_ep->received.size() >= grams.size();
  };
  FUZZ_CHECK(loop::fuzz::run_until(s.lp, drain_echoes));
  FUZZ_CHECK(s.udp->received == grams);
  FUZZ_CHECK(s.unix_ep->received == grams);
  FUZZ_CHECK(echoes == grams);
  for (auto& a : s.udp->from) FUZZ_CHECK(a == s.peer_addr);
  FUZZ_CHECK(s.udp->errors == 0 && s.unix_ep->errors == 0);
  return 0;
}

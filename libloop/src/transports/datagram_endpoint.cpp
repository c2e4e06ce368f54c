// EventLoop::create_datagram_endpoint: asyncio's base_events.create_datagram_endpoint, step by
// step: check the options, resolve local/remote addresses (getaddrinfo in the executor),
// pair them by (family, proto), try each pair until a socket binds/connects, then make the
// transport and wait for connection_made.
#include "transports/datagram_endpoint.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "loop/loop.hpp"
#include "transports/datagram_transport.hpp"
#include "transports/socket_utils.hpp"

namespace loop::detail {

namespace {

// asyncio's _ensure_resolved: a SocketAddress is already resolved (it is kept only if it
// matches the family asked for); a HostPort goes through getaddrinfo off the loop's thread.
Coroutine<std::vector<DatagramAddrInfo>> ensure_resolved(EventLoop& lp, const EndpointAddress& a,
                                                         int family, int proto, int flags) {
  if (auto* sa = std::get_if<SocketAddress>(&a)) {
    std::vector<DatagramAddrInfo> out;
    // Tagged as the resolver tags a host (asyncio's _ipaddr_info): UDP for IP, so that a
    // SocketAddress on one side pairs with a resolved host on the other.
    bool ip_proto = proto == 0 || proto == IPPROTO_TCP || proto == IPPROTO_UDP;
    int tagged = sa->family() == AF_UNIX || !ip_proto ? proto : IPPROTO_UDP;
    if (family == 0 || family == sa->family()) out.push_back({sa->family(), tagged, *sa});
    co_return out;
  }
  const auto& hp = std::get<HostPort>(a);
  // The resolver create_connection uses: numeric hosts at once, names through
  // EventLoop::getaddrinfo, failures as loop::GaiError (asyncio's socket.gaierror).
  std::string host = hp.host;
  auto found = co_await resolve(lp, host, hp.port, family, SOCK_DGRAM, proto, flags);
  if (found.empty()) throw GaiError(EAI_NONAME, "getaddrinfo('" + host + "') returned no address");
  std::vector<DatagramAddrInfo> infos;
  for (auto& f : found) infos.push_back({f.family, f.protocol, f.addr});
  co_return infos;
}

std::string describe(const std::optional<EndpointAddress>& a) {
  if (!a) return "None";
  if (auto* sa = std::get_if<SocketAddress>(&*a)) return sa->to_string();
  const auto& hp = std::get<HostPort>(*a);
  return hp.host + ":" + std::to_string(hp.port);
}

void check_sock_options(const DatagramEndpointOptions& o) {
  std::string problems;
  auto add = [&](bool set, const std::string& text) {
    if (!set) return;
    if (!problems.empty()) problems += ", ";
    problems += text;
  };
  add(o.local_addr.has_value(), "local_addr=" + describe(o.local_addr));
  add(o.remote_addr.has_value(), "remote_addr=" + describe(o.remote_addr));
  add(o.family != 0, "family=" + std::to_string(o.family));
  add(o.proto != 0, "proto=" + std::to_string(o.proto));
  add(o.flags != 0, "flags=" + std::to_string(o.flags));
  add(o.reuse_port.value_or(false), "reuse_port=True");
  add(o.allow_broadcast.value_or(false), "allow_broadcast=True");
  if (!problems.empty())
    throw std::invalid_argument(
        "socket modifier keyword arguments can not be used when sock is specified. (" + problems +
        ")");
}

// A stale unix socket file left by a dead endpoint is removed before binding (asyncio does).
void remove_stale_unix_socket(const SocketAddress& a) {
  if (a.family() != AF_UNIX) return;
  std::string path = a.host();
  if (path.empty() || path[0] == '@') return;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
}

void setsockopt_or_throw(int fd, int level, int name, const char* what) {
  int one = 1;
  if (::setsockopt(fd, level, name, &one, sizeof one) != 0)
    throw std::system_error(errno, std::generic_category(), what);
}

using Candidate = DatagramCandidate;

// Creates, configures, binds and connects one socket; throws std::system_error on failure.
int open_socket(const Candidate& c, const DatagramEndpointOptions& o) {
  int fd = ::socket(c.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, c.proto);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  try {
    if (o.reuse_port.value_or(false))
      setsockopt_or_throw(fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT");
    if (o.allow_broadcast.value_or(false))
      setsockopt_or_throw(fd, SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST");
    if (c.local) {
      remove_stale_unix_socket(*c.local);
      if (::bind(fd, c.local->data(), c.local->size()) != 0)
        throw std::system_error(errno, std::generic_category(),
                                "bind(" + c.local->to_string() + ")");
    }
    // A broadcasting endpoint stays unconnected: replies come from other addresses.
    if (c.remote && !o.allow_broadcast.value_or(false)) {
      // Connecting a datagram socket only records the peer: it never blocks.
      if (::connect(fd, c.remote->data(), c.remote->size()) != 0)
        throw std::system_error(errno, std::generic_category(),
                                "connect(" + c.remote->to_string() + ")");
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  return fd;
}

}  // namespace

std::vector<DatagramCandidate> pair_datagram_addresses(
    const std::optional<std::vector<DatagramAddrInfo>>& local,
    const std::optional<std::vector<DatagramAddrInfo>>& remote) {
  std::vector<std::pair<std::pair<int, int>,
                        std::pair<std::optional<SocketAddress>, std::optional<SocketAddress>>>>
      joined;
  auto slot = [&](int fam, int pro) -> auto& {
    for (auto& j : joined)
      if (j.first == std::make_pair(fam, pro)) return j.second;
    joined.push_back({{fam, pro}, {}});
    return joined.back().second;
  };
  if (local)
    for (auto& ai : *local) slot(ai.family, ai.proto).first = ai.addr;
  if (remote)
    for (auto& ai : *remote) slot(ai.family, ai.proto).second = ai.addr;
  // Each address given must have a match in every pair kept.
  std::vector<DatagramCandidate> candidates;
  for (auto& [key, pair] : joined) {
    if ((local && !pair.first) || (remote && !pair.second)) continue;
    candidates.push_back({key.first, key.second, pair.first, pair.second});
  }
  if (candidates.empty()) throw std::invalid_argument("can not get address information");
  return candidates;
}

Coroutine<std::shared_ptr<DatagramTransport>> create_datagram_endpoint(
    EventLoop& lp, DatagramProtocolFactory protocol_factory, DatagramEndpointOptions o) {
  lp.check_closed();
  if (lp.get_debug()) lp.check_thread();
  // CPython bpo-37228 (3.8.1): SO_REUSEADDR on UDP lets another socket take over the port.
  // Its message names SO_REUSEPORT by mistake; kept verbatim so it can be searched for.
  if (o.reuse_address.value_or(false))
    throw std::invalid_argument(
        "Passing `reuse_address=True` is no longer supported, as the usage of SO_REUSEPORT in "
        "UDP poses a significant security concern.");

  int fd = -1;
  std::optional<SocketAddress> r_addr;
  if (o.sock) {
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(*o.sock, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_DGRAM)
      throw std::invalid_argument("A UDP Socket was expected, got fd=" + std::to_string(*o.sock));
    check_sock_options(o);
    fd = *o.sock;
  } else {
    std::vector<Candidate> candidates;
    if (!o.local_addr && !o.remote_addr) {
      if (o.family == 0) throw std::invalid_argument("unexpected address family");
      candidates.push_back({o.family, o.proto, std::nullopt, std::nullopt});
    } else {
      std::optional<std::vector<DatagramAddrInfo>> local_infos, remote_infos;
      if (o.local_addr)
        local_infos = co_await ensure_resolved(lp, *o.local_addr, o.family, o.proto, o.flags);
      if (o.remote_addr)
        remote_infos = co_await ensure_resolved(lp, *o.remote_addr, o.family, o.proto, o.flags);
      candidates = pair_datagram_addresses(local_infos, remote_infos);
    }
    std::exception_ptr first_error;
    for (auto& c : candidates) {
      try {
        fd = open_socket(c, o);
      } catch (...) {
        if (!first_error) first_error = std::current_exception();
        continue;
      }
      r_addr = c.remote;
      break;
    }
    if (fd < 0) std::rethrow_exception(first_error);
  }

  std::shared_ptr<DatagramSocketTransport> transport;
  std::shared_ptr<DatagramProtocol> protocol;
  try {
    protocol = protocol_factory();
    if (!protocol) throw std::invalid_argument("protocol_factory returned no protocol");
    transport = std::make_shared<DatagramSocketTransport>(lp, fd, protocol, r_addr);
  } catch (...) {
    ::close(fd);
    throw;
  }
  Future<void> waiter = lp.create_future<void>();
  transport->start(waiter);
  std::exception_ptr failed;
  try {
    co_await waiter;
  } catch (...) {
    failed = std::current_exception();
  }
  if (failed) {
    transport->close();
    std::rethrow_exception(failed);
  }
  co_return transport;
}

}  // namespace loop::detail

// create_datagram_endpoint's pairing of resolved addresses, apart so that tests can give it
// several addresses per (family, proto) without a resolver that returns them.
#pragma once

#include <optional>
#include <vector>

#include "loop/address.hpp"

namespace loop::detail {

/// One resolved address: asyncio's (family, proto, address) from getaddrinfo.
struct DatagramAddrInfo {
  int family;
  int proto;
  SocketAddress addr;
};

/// One (local, remote) pair to try, for one (family, proto).
struct DatagramCandidate {
  int family;
  int proto;
  std::optional<SocketAddress> local;
  std::optional<SocketAddress> remote;
};

/// asyncio's addr_infos: the addresses joined by (family, proto) in the order getaddrinfo gave
/// them, the last address of a key winning; keys lacking an address that was asked for
/// (`local`/`remote` set) are left out. std::invalid_argument when no pair is left.
std::vector<DatagramCandidate> pair_datagram_addresses(
    const std::optional<std::vector<DatagramAddrInfo>>& local,
    const std::optional<std::vector<DatagramAddrInfo>>& remote);

}  // namespace loop::detail

// The options of EventLoop::create_datagram_endpoint (asyncio's keyword arguments).
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "loop/address.hpp"

namespace loop {

/// A host name (or numeric host) and a port, resolved with getaddrinfo off the loop's thread.
struct HostPort {
  std::string host;
  unsigned short port = 0;
};

/// An address to bind or connect to: already resolved, or to be resolved.
using EndpointAddress = std::variant<SocketAddress, HostPort>;

/// create_datagram_endpoint's keyword arguments. Leave a field empty for asyncio's None.
struct DatagramEndpointOptions {
  /// Bind the socket here (a unix path via SocketAddress::from_unix_path; a stale socket file
  /// left at that path is removed first, as asyncio does).
  std::optional<EndpointAddress> local_addr;
  /// Connect the socket here (sendto without an address then goes there; another address is
  /// refused). With allow_broadcast the socket is not connected, only remembered.
  std::optional<EndpointAddress> remote_addr;
  int family = 0;  // AF_UNSPEC: from the addresses
  int proto = 0;
  int flags = 0;  // getaddrinfo flags
  /// Refused when true (std::invalid_argument): SO_REUSEADDR on UDP lets another process
  /// hijack the port (CPython bpo-37228). Kept so that the refusal is explicit.
  std::optional<bool> reuse_address;
  /// SO_REUSEPORT: several processes may bind the same address (same user only).
  std::optional<bool> reuse_port;
  /// SO_BROADCAST: may send to broadcast addresses.
  std::optional<bool> allow_broadcast;
  /// An existing datagram socket to use (made non-blocking; the transport owns and closes it).
  /// No other option may be given with it.
  std::optional<int> sock;
};

}  // namespace loop

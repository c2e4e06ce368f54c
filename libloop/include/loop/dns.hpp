// Name resolution results and errors for EventLoop::getaddrinfo / getnameinfo.
#pragma once

#include <string>
#include <system_error>

#include "loop/address.hpp"

namespace loop {

/// One result of getaddrinfo: Python's (family, type, proto, canonname, sockaddr) tuple.
struct AddrInfo {
  int family = 0;
  int type = 0;
  int proto = 0;
  std::string canonname;
  SocketAddress address;
};

/// The category of getaddrinfo/getnameinfo's EAI_* codes; message() is gai_strerror's text.
const std::error_category& gai_category() noexcept;

/// A getaddrinfo/getnameinfo failure: Python's socket.gaierror, which is an OSError, so a
/// std::system_error here. code() is the EAI_* value in gai_category(); what() names the call
/// and the host, and ends with gai_strerror's text.
class GaiError : public std::system_error {
 public:
  GaiError(int code, const std::string& msg) : std::system_error(code, gai_category(), msg) {}
};

}  // namespace loop

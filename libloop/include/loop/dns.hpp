// Name resolution results and errors for EventLoop::getaddrinfo / getnameinfo.
#pragma once

#include <stdexcept>
#include <string>

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

/// A getaddrinfo/getnameinfo failure (Python's socket.gaierror): code() is the EAI_* value,
/// what() names the host and gives gai_strerror's text.
class GaiError : public std::runtime_error {
 public:
  GaiError(int code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

}  // namespace loop

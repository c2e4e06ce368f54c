// SocketAddress: conversions between sockaddr and the "HOST:PORT" / "unix:PATH" text forms.
#include "loop/address.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <stdexcept>

namespace loop {

SocketAddress::SocketAddress(const sockaddr* sa, socklen_t len) {
  std::memset(&storage_, 0, sizeof storage_);
  len_ = std::min<socklen_t>(len, sizeof storage_);
  std::memcpy(&storage_, sa, len_);
}

SocketAddress SocketAddress::from_ip(const std::string& host, unsigned short port) {
  SocketAddress a;
  // inet_pton stops at a NUL: "127.0.0.1\0junk" would pass as 127.0.0.1 (Python: ValueError).
  if (host.find('\0') != std::string::npos)
    throw std::invalid_argument("not a numeric IP address: embedded NUL");
  std::string h = host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage_);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
  if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.len_ = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len_ = sizeof(sockaddr_in6);
  } else {
    throw std::invalid_argument("not a numeric IP address: '" + host + "'");
  }
  return a;
}

SocketAddress SocketAddress::from_unix_path(const std::string& path) {
  SocketAddress a;
  auto* un = reinterpret_cast<sockaddr_un*>(&a.storage_);
  un->sun_family = AF_UNIX;
  if (path.empty()) throw std::invalid_argument("empty unix socket path");
  if (path.size() >= sizeof(un->sun_path))
    throw std::invalid_argument("unix socket path too long: " + path);
  // Linux's abstract namespace: "@name", or "\0name" as Python writes it; its length is exact.
  bool abstract = is_abstract_unix_path(path);
  if (!abstract && path.find('\0') != std::string::npos)
    throw std::invalid_argument("unix socket path has an embedded null byte");
  std::memcpy(un->sun_path, path.data(), path.size());
  if (abstract) un->sun_path[0] = '\0';
  a.len_ =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  return a;
}

std::string SocketAddress::host() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  switch (storage_.ss_family) {
    case AF_INET:
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf,
                sizeof buf);
      return buf;
    case AF_INET6:
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf,
                sizeof buf);
      return buf;
    case AF_UNIX: {
      auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
      std::size_t n =
          len_ > offsetof(sockaddr_un, sun_path) ? len_ - offsetof(sockaddr_un, sun_path) : 0;
      if (n == 0) return {};
      if (un->sun_path[0] == '\0') return "@" + std::string(un->sun_path + 1, n - 1);
      return std::string(un->sun_path, strnlen(un->sun_path, n));
    }
  }
  return {};
}

unsigned short SocketAddress::port() const {
  switch (storage_.ss_family) {
    case AF_INET:
      return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    case AF_INET6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

std::string SocketAddress::to_string() const {
  switch (storage_.ss_family) {
    case AF_INET:
      return host() + ":" + std::to_string(port());
    case AF_INET6:
      return "[" + host() + "]:" + std::to_string(port());
    case AF_UNIX:
      return "unix:" + host();
  }
  return "<unknown address>";
}

}  // namespace loop

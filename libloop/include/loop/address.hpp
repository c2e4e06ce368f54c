// SocketAddress: a sockaddr of any family, printable as asyncio prints peernames.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <string>
#include <string_view>

namespace loop {

class SocketAddress {
 public:
  SocketAddress() { std::memset(&storage_, 0, sizeof storage_); }
  SocketAddress(const sockaddr* sa, socklen_t len);
  /// From a numeric host ("127.0.0.1", "::1") and a port; throws std::invalid_argument.
  static SocketAddress from_ip(const std::string& host, unsigned short port);
  /// A unix-domain address; a leading '@' or NUL (Python's spelling) names the Linux
  /// abstract namespace.
  static SocketAddress from_unix_path(const std::string& path);
  /// Whether from_unix_path takes `path` as an abstract name (no file behind it).
  static bool is_abstract_unix_path(std::string_view path) {
    return !path.empty() && (path[0] == '@' || path[0] == '\0');
  }

  int family() const { return storage_.ss_family; }
  const sockaddr* data() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* data() { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t size() const { return len_; }
  void set_size(socklen_t len) { len_ = len; }
  static constexpr socklen_t capacity() { return sizeof(sockaddr_storage); }

  /// The numeric host ("127.0.0.1", "::1"), or the unix path ("@name" for abstract ones).
  std::string host() const;
  /// The port, or 0 for unix addresses.
  unsigned short port() const;
  /// "127.0.0.1:8888", "[::1]:8888", "unix:/tmp/s", "unix:@name".
  std::string to_string() const;
  bool operator==(const SocketAddress& o) const {
    return len_ == o.len_ && std::memcmp(&storage_, &o.storage_, len_) == 0;
  }

 private:
  sockaddr_storage storage_;
  socklen_t len_ = 0;
};

}  // namespace loop

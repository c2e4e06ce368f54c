// Endpoints as loopctl takes them: HOST:PORT, [V6ADDR]:PORT, unix:PATH (unix:@NAME abstract).
#pragma once

#include <string>

namespace loopctl {

struct Endpoint {
  enum class Kind { tcp, unix_socket };
  Kind kind = Kind::tcp;
  std::string host;  // tcp: a name or numeric address, without brackets
  int port = 0;      // tcp
  std::string path;  // unix: a filesystem path, or "@name" for the abstract namespace

  bool is_unix() const { return kind == Kind::unix_socket; }
  /// Back to text: "127.0.0.1:8888", "[::1]:8888", "unix:/tmp/s", "unix:@name".
  std::string to_string() const;
};

/// Parses an endpoint; throws UsageError with a message saying what is wrong.
Endpoint parse_endpoint(const std::string& text);

/// Parses a host to listen on (--host): a name or an address as it is; an IPv6 literal may be
/// written in brackets as in endpoints ("[::1]"), returned without them. Throws UsageError for
/// brackets around anything but an IPv6 address.
std::string parse_host(const std::string& text);

/// Parses a port number 0-65535; throws UsageError otherwise.
int parse_port(const std::string& text);

}  // namespace loopctl

#include "endpoint.hpp"

#include <arpa/inet.h>

#include <cctype>

#include "command.hpp"

namespace loopctl {

namespace {
const char* const kForms = "expected HOST:PORT, [V6ADDR]:PORT or unix:PATH";

bool is_ipv6_address(const std::string& host) {
  in6_addr a6{};
  return inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}
}  // namespace

int parse_port(const std::string& text) {
  if (text.empty() || text.size() > 6)
    throw UsageError("invalid port '" + text + "': expected a number 0-65535");
  for (char c : text)
    if (!std::isdigit(static_cast<unsigned char>(c)))
      throw UsageError("invalid port '" + text + "': expected a number 0-65535");
  int port = std::stoi(text);
  if (port > 65535) throw UsageError("port " + text + " out of range 0-65535");
  return port;
}

std::string parse_host(const std::string& text) {
  if (text.empty() || text.front() != '[') return text;
  bool closed = text.size() >= 2 && text.back() == ']';
  std::string inner = closed ? text.substr(1, text.size() - 2) : std::string();
  if (!closed || !is_ipv6_address(inner))
    throw UsageError("'" + text + "' is not an IPv6 address in brackets such as [::1]");
  return inner;
}

Endpoint parse_endpoint(const std::string& text) {
  Endpoint ep;
  // Only reachable from code (argv has no NUL bytes), but a name must not be cut short.
  if (text.find('\0') != std::string::npos)
    throw UsageError("malformed endpoint: it contains a NUL byte");
  if (text.rfind("unix:", 0) == 0) {
    ep.kind = Endpoint::Kind::unix_socket;
    ep.path = text.substr(5);
    if (ep.path.empty() || ep.path == "@")
      throw UsageError("malformed endpoint '" + text + "': empty unix socket path");
    if (ep.path.size() > 107)
      throw UsageError("malformed endpoint '" + text + "': unix socket path longer than 107 bytes");
    return ep;
  }
  std::string port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw UsageError("malformed endpoint '" + text + "': " + kForms);
    ep.host = text.substr(1, close - 1);
    if (!is_ipv6_address(ep.host))
      throw UsageError("malformed endpoint '" + text + "': '" + ep.host +
                       "' is not an IPv6 address");
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0)
      throw UsageError("malformed endpoint '" + text + "': " + kForms);
    ep.host = text.substr(0, colon);
    if (ep.host.find(':') != std::string::npos)
      throw UsageError("malformed endpoint '" + text + "': an IPv6 address needs brackets, [" +
                       ep.host + "]:PORT");
    port = text.substr(colon + 1);
  }
  ep.port = parse_port(port);
  return ep;
}

std::string Endpoint::to_string() const {
  if (is_unix()) return "unix:" + path;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

}  // namespace loopctl

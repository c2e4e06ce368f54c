// loopctl's endpoint parser on arbitrary text: it either parses or throws UsageError (nothing
// else), and what it parses prints back to text that parses to the same endpoint.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "command.hpp"
#include "endpoint.hpp"

namespace {
bool same(const loopctl::Endpoint& a, const loopctl::Endpoint& b) {
  return a.kind == b.kind && a.host == b.host && a.port == b.port && a.path == b.path;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  loopctl::Endpoint ep;
  try {
    ep = loopctl::parse_endpoint(text);
  } catch (const loopctl::UsageError&) {
    return 0;
  }
  if (ep.is_unix() ? ep.path.empty() : (ep.port < 0 || ep.port > 65535)) std::abort();
  if (!same(loopctl::parse_endpoint(ep.to_string()), ep)) std::abort();
  try {
    int port = loopctl::parse_port(text);
    if (port < 0 || port > 65535) std::abort();
  } catch (const loopctl::UsageError&) {
  }
  return 0;
}

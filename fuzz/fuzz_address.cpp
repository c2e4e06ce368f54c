// loop::SocketAddress on arbitrary input: from_ip on any text (parses or throws
// std::invalid_argument; what parses prints back and parses to the same address), and the
// sockaddr constructor on arbitrary bytes and lengths, as a peer's address from recvfrom or
// accept could be (host(), port() and to_string() never read past what was given).
// Input: "<host text>\n--\n<sockaddr bytes>".
#include <cstddef>
#include <cstdint>
#include <loop/address.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto [host, raw] = loop::fuzz::split_input(data, size);
  unsigned short port = size >= 2 ? static_cast<unsigned short>(data[0] << 8 | data[1]) : 0;
  try {
    auto a = loop::SocketAddress::from_ip(host, port);
    FUZZ_CHECK(host.find('\0') == std::string::npos);  // inet_pton would stop there
    FUZZ_CHECK(a.port() == port);
    auto again = loop::SocketAddress::from_ip(a.host(), port);
    FUZZ_CHECK(again == a);
    FUZZ_CHECK(!a.to_string().empty());
  } catch (const std::invalid_argument&) {
  }
  // A heap copy of exactly the given length, so that ASan sees any read past it.
  std::vector<char> bytes(raw.begin(), raw.end());
  if (bytes.size() > sizeof(sockaddr_storage)) bytes.resize(sizeof(sockaddr_storage));
  if (bytes.size() < sizeof(sa_family_t)) return 0;
  try {
    loop::SocketAddress a(reinterpret_cast<const sockaddr*>(bytes.data()),
                          static_cast<socklen_t>(bytes.size()));
    (void)a.host();
    (void)a.port();
    (void)a.to_string();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}

// getaddrinfo/getnameinfo as coroutines: the blocking libc calls run in the loop's default
// executor, as asyncio's loop.getaddrinfo does, so the loop keeps running meanwhile.
#include "loop/dns.hpp"

#include <netdb.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "loop/loop.hpp"

namespace loop {

namespace {

// EAI_SYSTEM's text ("System error") needs errno's to say anything: "...failed: Connection
// refused: System error" once system_error has appended the category's text.
std::string errno_detail(int code, int saved_errno) {
  if (code != EAI_SYSTEM) return {};
  return std::string(": ") + std::strerror(saved_errno);
}

class GaiCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "getaddrinfo"; }
  std::string message(int code) const override { return ::gai_strerror(code); }
};

std::vector<AddrInfo> resolve(const std::string& host, const std::string& port, int family,
                              int type, int proto, int flags) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = type;
  hints.ai_protocol = proto;
  hints.ai_flags = flags;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                         port.empty() ? nullptr : port.c_str(), &hints, &res);
  if (rc != 0) {
    throw GaiError(rc,
                   "getaddrinfo('" + host + "', '" + port + "') failed" + errno_detail(rc, errno));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, &::freeaddrinfo);
  std::vector<AddrInfo> out;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    AddrInfo info;
    info.family = ai->ai_family;
    info.type = ai->ai_socktype;
    info.proto = ai->ai_protocol;
    if (ai->ai_canonname) info.canonname = ai->ai_canonname;
    info.address = SocketAddress(ai->ai_addr, ai->ai_addrlen);
    out.push_back(std::move(info));
  }
  return out;
}

std::pair<std::string, std::string> name_of(const SocketAddress& address, int flags) {
  char host[NI_MAXHOST] = {0};
  char serv[NI_MAXSERV] = {0};
  int rc =
      ::getnameinfo(address.data(), address.size(), host, sizeof host, serv, sizeof serv, flags);
  if (rc != 0) {
    throw GaiError(rc, "getnameinfo(" + address.to_string() + ") failed" + errno_detail(rc, errno));
  }
  return {host, serv};
}

}  // namespace

const std::error_category& gai_category() noexcept {
  static const GaiCategory category;
  return category;
}

Coroutine<std::vector<AddrInfo>> EventLoop::getaddrinfo(std::string host, std::string port,
                                                        int family, int type, int proto,
                                                        int flags) {
  check_closed();
  co_return co_await run_in_executor(nullptr, &resolve, std::move(host), std::move(port), family,
                                     type, proto, flags);
}

Coroutine<std::pair<std::string, std::string>> EventLoop::getnameinfo(SocketAddress address,
                                                                      int flags) {
  check_closed();
  co_return co_await run_in_executor(nullptr, &name_of, std::move(address), flags);
}

}  // namespace loop

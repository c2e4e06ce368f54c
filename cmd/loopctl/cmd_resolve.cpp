// loopctl resolve: loop.getaddrinfo (run in the default executor, so the loop never blocks);
// one JSON object per result on stdout: family, type, proto, address, port.
#include <netdb.h>
#include <sys/socket.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.hpp"

namespace loopctl {
namespace {

std::string family_name(int family) {
  switch (family) {
    case AF_INET:
      return "AF_INET";
    case AF_INET6:
      return "AF_INET6";
    case AF_UNIX:
      return "AF_UNIX";
    default:
      return std::to_string(family);
  }
}

std::string type_name(int type) {
  switch (type) {
    case SOCK_STREAM:
      return "SOCK_STREAM";
    case SOCK_DGRAM:
      return "SOCK_DGRAM";
    case SOCK_RAW:
      return "SOCK_RAW";
    case SOCK_SEQPACKET:
      return "SOCK_SEQPACKET";
    default:
      return std::to_string(type);
  }
}

int family_value(const std::string& s) {
  if (s == "inet") return AF_INET;
  if (s == "inet6") return AF_INET6;
  return AF_UNSPEC;
}

int type_value(const std::string& s) {
  if (s == "stream") return SOCK_STREAM;
  if (s == "dgram") return SOCK_DGRAM;
  return 0;
}

// Outside the coroutine: GCC 12 miscompiles string literals in coroutine bodies.
void print_results(const std::vector<loop::AddrInfo>& results) {
  for (const auto& info : results) {
    nlohmann::json rec = {{"family", family_name(info.family)},
                          {"type", type_name(info.type)},
                          {"proto", info.proto},
                          {"address", info.address.host()},
                          {"port", info.address.port()}};
    std::printf("%s\n", rec.dump().c_str());
  }
  std::fflush(stdout);
}

// "cannot resolve HOST: <gai_strerror text>" (GaiError's what() also names the call). When the
// service is what failed, the message names it: gai_strerror's "Servname not supported for
// ai_socktype" does not say which of the two arguments was wrong.
[[noreturn]] void throw_resolve_error(const std::string& host, const std::string& port,
                                      const std::string& type, std::exception_ptr failed) {
  try {
    std::rethrow_exception(failed);
  } catch (const loop::GaiError& e) {
    std::string what = e.what();
    auto at = what.rfind("failed: ");
    std::string why = at == std::string::npos ? e.code().message() : what.substr(at + 8);
    if (e.code().value() == EAI_SERVICE)
      why = "unknown service '" + port + "'" + (type == "any" ? "" : " for --type " + type) + " (" +
            why + ")";
    throw RuntimeFailure("cannot resolve " + host + ": " + why);
  } catch (const std::exception& e) {
    throw RuntimeFailure("cannot resolve " + host + ": " + e.what());
  }
}

// A number must be a port (getaddrinfo would take 99999 modulo 65536); a name is a service.
CLI::Validator port_or_service() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        if (value.empty()) return {};
        const bool negative = value[0] == '-';
        const std::string digits = value.substr(negative ? 1 : 0);
        if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
          return {};  // a service name
        if (!negative && digits.size() <= 5 && std::stoul(digits) <= 65535) return {};
        return value + " is outside 0-65535";
      },
      "PORT");
}

class Resolve final : public Command {
 public:
  const char* name() const override { return "resolve"; }
  const char* description() const override {
    return "Resolve HOST [PORT] with the loop's non-blocking getaddrinfo; one JSON object per "
           "result (family, type, proto, address, port)";
  }
  void setup(CLI::App& app) override {
    app.add_option("host", host_, "The host name or numeric address")->required();
    app.add_option("port", port_, "The port number or service name ('' = none: port 0)")
        ->check(port_or_service());
    app.add_option("--family", family_, "The address family")
        ->check(CLI::IsMember({"inet", "inet6", "any"}));
    app.add_option("--type", type_, "The socket type")
        ->check(CLI::IsMember({"stream", "dgram", "any"}));
  }

  int run(loop::EventLoop& lp) override { return lp.run_until_complete(resolve(lp)); }

 private:
  loop::Coroutine<int> resolve(loop::EventLoop& lp) {
    std::vector<loop::AddrInfo> results;
    std::exception_ptr failed;
    try {
      results = co_await lp.getaddrinfo(host_, port_, family_value(family_), type_value(type_));
    } catch (const std::exception&) {
      failed = std::current_exception();
    }
    if (failed) throw_resolve_error(host_, port_, type_, failed);
    print_results(results);
    co_return 0;
  }

  std::string host_;
  std::string port_;
  std::string family_ = "any";
  std::string type_ = "any";
};

}  // namespace

std::unique_ptr<Command> make_resolve() {
  return std::make_unique<Resolve>();
}

}  // namespace loopctl

// Differential scenarios of argument validation, connection failures and name resolution
// (the asyncio half: diff_names_errors.py).
//
// An OSError is printed as its type, errno and message: what() without the ": <strerror>"
// that std::system_error appends (Python's strerror); any other error as its type and
// what(). Ports and paths that vary by run are printed as PORT and PATH.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <loop/loop.hpp>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "scenario.hpp"

using diff::say;

namespace {

// Runs body(lp) on a new loop until done, then closes the loop.
template <class F>
void run(F body, bool debug = false) {
  loop::EventLoop lp;
  lp.set_debug(debug);
  lp.run_until_complete(body(lp));
  lp.close();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  for (std::size_t i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size()))
    s.replace(i, from.size(), to);
  return s;
}

std::string norm(std::string s, int port, const std::string& path) {
  if (!path.empty()) s = replace_all(std::move(s), path, "PATH");
  if (port >= 0) s = replace_all(std::move(s), std::to_string(port), "PORT");
  return s;
}

void say_exc(const std::string& what, const std::exception& e, int port = -1,
             const std::string& path = {}) {
  // asyncio's "Multiple exceptions" is a bare OSError (errno None), whatever the first
  // address's errno (which code() keeps).
  if (dynamic_cast<const loop::MultipleConnectErrors*>(&e)) {
    say(what, "OSError", norm(e.what(), port, path));
    return;
  }
  if (auto* se = dynamic_cast<const std::system_error*>(&e)) {
    std::string msg = se->what();
    const std::string text = se->code().message();
    const std::string suffix = ": " + text;
    if (msg.size() >= suffix.size() &&
        msg.compare(msg.size() - suffix.size(), suffix.size(), suffix) == 0)
      msg.resize(msg.size() - suffix.size());
    say(what, diff::exception_name(e), se->code().value(), norm(msg, port, path));
    return;
  }
  say(what, diff::exception_name(e), norm(e.what(), port, path));
}

// Type and errno only: where libloop's message names the address and asyncio re-raises the
// bare OSError (README, "departs from asyncio on purpose").
void say_kind(const std::string& what, const std::exception& e) {
  auto* se = dynamic_cast<const std::system_error*>(&e);
  say(what, diff::exception_name(e), se ? se->code().value() : 0);
}

// The text of a message up to `upto` (the rest names an object that varies).
std::string prefix(const std::string& s, const std::string& upto) {
  auto i = s.find(upto);
  return i == std::string::npos ? s : s.substr(0, i + upto.size());
}

struct Proto : loop::Protocol {};
struct DProto : loop::DatagramProtocol {};

std::shared_ptr<Proto> make_proto() {
  return std::make_shared<Proto>();
}
std::shared_ptr<DProto> make_dproto() {
  return std::make_shared<DProto>();
}

// A port on 127.0.0.1 that refuses connections: bound, never listening (kept bound).
std::pair<int, int> refused_port() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto a = loop::SocketAddress::from_ip("127.0.0.1", 0);
  if (s < 0 || ::bind(s, a.data(), a.size()) != 0) throw std::runtime_error("bind");
  loop::SocketAddress got;
  socklen_t len = loop::SocketAddress::capacity();
  ::getsockname(s, got.data(), &len);
  got.set_size(len);
  return {s, got.port()};
}

std::string tmpdir() {
  char tmpl[] = "/tmp/diffneXXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
  return tmpl;
}

// Python's repr() of a sockaddr tuple.
std::string sockaddr_repr(const loop::SocketAddress& a) {
  if (a.family() == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(a.data());
    return "('" + a.host() + "', " + std::to_string(a.port()) + ", " +
           std::to_string(ntohl(in6->sin6_flowinfo)) + ", " + std::to_string(in6->sin6_scope_id) +
           ")";
  }
  return "('" + a.host() + "', " + std::to_string(a.port()) + ")";
}

std::string ai_line(const loop::AddrInfo& i) {
  return std::to_string(i.family) + " " + std::to_string(i.type) + " " + std::to_string(i.proto) +
         " '" + i.canonname + "' " + sockaddr_repr(i.address);
}

}  // namespace

// ---- argument validation -----------------------------------------------------------------------

SCENARIO(connection_argument_errors_in_asyncio_order) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto ctx = loop::SSLContext::create_default_context();
    struct Case {
      std::string label;
      std::string host;
      int port;
      loop::ConnectionOptions o;
    };
    std::vector<Case> cases;
    {
      loop::ConnectionOptions o;
      o.sock = s;
      cases.push_back({"host/port and sock", "127.0.0.1", 1, o});
    }
    cases.push_back({"neither", "", 0, {}});
    {
      loop::ConnectionOptions o;
      o.sock = s;
      o.server_hostname = "x";
      cases.push_back({"server_hostname without ssl, with host and sock", "127.0.0.1", 1, o});
    }
    {
      loop::ConnectionOptions o;
      o.ssl = ctx;
      o.sock = s;
      cases.push_back({"ssl without host", "", 0, o});
    }
    {
      loop::ConnectionOptions o;
      o.ssl = ctx;
      cases.push_back({"ssl with port only", "", 1, o});
    }
    {
      loop::ConnectionOptions o;
      o.sock = s;
      o.ssl_handshake_timeout = 1.0;
      cases.push_back({"handshake timeout without ssl", "127.0.0.1", 1, o});
    }
    {
      loop::ConnectionOptions o;
      o.ssl_handshake_timeout = 1.0;
      cases.push_back({"handshake timeout without ssl and no sock", "", 0, o});
    }
    {
      loop::ConnectionOptions o;
      o.ssl = ctx;
      o.ssl_handshake_timeout = 1.0;
      cases.push_back({"ssl without host and handshake timeout", "", 0, o});
    }
    for (auto& c : cases) {
      try {
        auto conn = lp.create_connection(make_proto, c.host, c.port, c.o);
        auto pair = co_await std::move(conn);
        say(c.label, "connected?");
      } catch (const std::exception& e) {
        say_exc(c.label, e);
      }
    }
    ::close(s);
  });
}

SCENARIO(connection_sock_must_be_a_stream_socket) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    loop::ConnectionOptions o;
    o.sock = u;
    try {
      auto conn = lp.create_connection(make_proto, o);
      auto pair = co_await std::move(conn);
    } catch (const std::invalid_argument& e) {
      say("udp sock:", diff::exception_name(e), prefix(e.what(), "was expected"));
    }
    ::close(u);
  });
}

SCENARIO(unix_connection_argument_errors) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto ctx = loop::SSLContext::create_default_context();
    struct Case {
      std::string label;
      std::string path;
      loop::ConnectionOptions o;
    };
    std::vector<Case> cases;
    {
      loop::ConnectionOptions o;
      o.sock = s;
      cases.push_back({"path and sock", "/nonexistent/x", o});
    }
    cases.push_back({"neither", "", {}});
    {
      loop::ConnectionOptions o;
      o.ssl = ctx;
      cases.push_back({"ssl without server_hostname", "/nonexistent/x", o});
    }
    {
      loop::ConnectionOptions o;
      o.server_hostname = "h";
      cases.push_back({"server_hostname without ssl", "/nonexistent/x", o});
    }
    {
      loop::ConnectionOptions o;
      o.sock = s;
      o.ssl_handshake_timeout = 2.0;
      cases.push_back({"handshake timeout without ssl", "", o});
    }
    for (auto& c : cases) {
      try {
        auto conn = lp.create_unix_connection(make_proto, c.path, c.o);
        auto pair = co_await std::move(conn);
        say(c.label, "connected?");
      } catch (const std::exception& e) {
        say_exc(c.label, e);
      }
    }
    int t = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    loop::ConnectionOptions o;
    o.sock = t;
    try {
      auto conn = lp.create_unix_connection(make_proto, "", o);
      auto pair = co_await std::move(conn);
    } catch (const std::invalid_argument& e) {
      say("inet sock:", diff::exception_name(e), prefix(e.what(), "was expected"));
    }
    ::close(t);
    ::close(s);
  });
}

SCENARIO(server_argument_errors) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct Case {
      std::string label;
      bool host_port;
      loop::ServerOptions o;
    };
    std::vector<Case> cases;
    {
      loop::ServerOptions o;
      o.sock = s;
      cases.push_back({"host/port and sock", true, o});
    }
    cases.push_back({"neither", false, {}});
    {
      loop::ServerOptions o;
      o.ssl_handshake_timeout = 1.0;
      cases.push_back({"handshake timeout without ssl", true, o});
    }
    {
      loop::ServerOptions o;
      o.sock = s;
      o.ssl_handshake_timeout = 1.0;
      cases.push_back({"handshake timeout without ssl, and sock", true, o});
    }
    for (auto& c : cases) {
      try {
        std::shared_ptr<loop::Server> srv;
        if (c.host_port) {
          auto made = lp.create_server(make_proto, "127.0.0.1", 0, c.o);
          srv = co_await std::move(made);
        } else {
          auto made = lp.create_server(make_proto, c.o);
          srv = co_await std::move(made);
        }
        say(c.label, "serving?");
        srv->close();
      } catch (const std::exception& e) {
        say_exc(c.label, e);
      }
    }
    int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    loop::ServerOptions o;
    o.sock = u;
    try {
      auto made = lp.create_server(make_proto, o);
      auto srv = co_await std::move(made);
    } catch (const std::invalid_argument& e) {
      say("udp sock:", diff::exception_name(e), prefix(e.what(), "was expected"));
    }
    ::close(u);
    ::close(s);
  });
}

SCENARIO(unix_server_argument_errors) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct Case {
      std::string label;
      std::string path;
      loop::ServerOptions o;
    };
    std::vector<Case> cases;
    {
      loop::ServerOptions o;
      o.sock = s;
      cases.push_back({"path and sock", "/nonexistent/x", o});
    }
    cases.push_back({"neither", "", {}});
    {
      loop::ServerOptions o;
      o.ssl_handshake_timeout = 1.0;
      cases.push_back({"handshake timeout without ssl", "/nonexistent/x", o});
    }
    for (auto& c : cases) {
      try {
        auto made = lp.create_unix_server(make_proto, c.path, c.o);
        auto srv = co_await std::move(made);
        say(c.label, "serving?");
        srv->close();
      } catch (const std::exception& e) {
        say_exc(c.label, e);
      }
    }
    int t = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    loop::ServerOptions o;
    o.sock = t;
    try {
      auto made = lp.create_unix_server(make_proto, "", o);
      auto srv = co_await std::move(made);
    } catch (const std::invalid_argument& e) {
      say("inet sock:", diff::exception_name(e), prefix(e.what(), "was expected"));
    }
    ::close(t);
    ::close(s);
  });
}

SCENARIO(datagram_argument_errors) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    std::vector<std::pair<std::string, loop::DatagramEndpointOptions>> cases;
    cases.push_back({"no address, no family", {}});
    {
      loop::DatagramEndpointOptions o;
      o.sock = u;
      o.proto = 17;
      o.flags = AI_PASSIVE;
      o.reuse_port = true;
      o.allow_broadcast = true;
      cases.push_back({"sock with options", o});
    }
    {
      loop::DatagramEndpointOptions o;
      o.local_addr = loop::HostPort{"127.0.0.1", 0};
      o.remote_addr = loop::HostPort{"::1", 9};
      cases.push_back({"local v4, remote v6", o});
    }
    for (auto& [label, o] : cases) {
      try {
        auto made = lp.create_datagram_endpoint(make_dproto, o);
        auto pair = co_await std::move(made);
        say(label, "created?");
        pair.first->close();
      } catch (const std::exception& e) {
        say(label, diff::exception_name(e), prefix(e.what(), "sock is specified."));
      }
    }
    int t = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    loop::DatagramEndpointOptions o;
    o.sock = t;
    try {
      auto made = lp.create_datagram_endpoint(make_dproto, o);
      auto pair = co_await std::move(made);
    } catch (const std::invalid_argument& e) {
      say("tcp sock:", diff::exception_name(e), prefix(e.what(), "was expected"));
    }
    ::close(t);
    ::close(u);
  });
}

SCENARIO(sock_ops_refuse_a_blocking_socket_in_debug_mode) {
  run(
      [](loop::EventLoop& lp) -> loop::Coroutine<void> {
        int fds[2];
        ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);  // blocking
        int a = fds[0], b = fds[1];
        try {
          auto op = lp.sock_recv(a, 10);
          co_await std::move(op);
          say("sock_recv", "done?");
        } catch (const std::exception& e) {
          say_exc("sock_recv", e);
        }
        try {
          auto op = lp.sock_sendall(a, "x");
          co_await std::move(op);
          say("sock_sendall", "done?");
        } catch (const std::exception& e) {
          say_exc("sock_sendall", e);
        }
        try {
          auto op = lp.sock_accept(a);
          co_await std::move(op);
          say("sock_accept", "done?");
        } catch (const std::exception& e) {
          say_exc("sock_accept", e);
        }
        int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        try {
          auto op = lp.sock_connect(c, loop::SocketAddress::from_ip("127.0.0.1", 1));
          co_await std::move(op);
        } catch (const std::exception& e) {
          say_exc("sock_connect", e);
        }
        ::close(c);
        ::close(a);
        ::close(b);
      },
      true);
}

// ---- connection failures -----------------------------------------------------------------------

SCENARIO(create_connection_refused_on_127_0_0_1) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto [holder, port] = refused_port();
    try {
      auto conn = lp.create_connection(make_proto, "127.0.0.1", port);
      auto pair = co_await std::move(conn);
    } catch (const std::exception& e) {
      say_exc("refused:", e, port);
      say("OSError:", dynamic_cast<const std::system_error*>(&e) != nullptr);
    }
    ::close(holder);
  });
}

// No host: getaddrinfo gives ::1 and 127.0.0.1; both refuse: "Multiple exceptions".
SCENARIO(create_connection_refused_on_both_loopbacks) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    int h4 = -1, h6 = -1, port = 0;
    for (int attempt = 0; attempt < 50; ++attempt) {  // a port free on both families
      h6 = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
      auto a6 = loop::SocketAddress::from_ip("::1", 0);
      if (::bind(h6, a6.data(), a6.size()) != 0) throw std::runtime_error("bind ::1");
      loop::SocketAddress got;
      socklen_t len = loop::SocketAddress::capacity();
      ::getsockname(h6, got.data(), &len);
      got.set_size(len);
      port = got.port();
      h4 = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      auto a4 = loop::SocketAddress::from_ip("127.0.0.1", static_cast<unsigned short>(port));
      if (::bind(h4, a4.data(), a4.size()) == 0) break;
      ::close(h4);
      ::close(h6);
    }
    try {
      auto conn = lp.create_connection(make_proto, "", port);
      auto pair = co_await std::move(conn);
    } catch (const std::exception& e) {
      say_exc("refused:", e, port);
    }
    ::close(h4);
    ::close(h6);
  });
}

SCENARIO(sock_connect_refused_on_127_0_0_1) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto [holder, port] = refused_port();
    int c = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    try {
      auto op = lp.sock_connect(
          c, loop::SocketAddress::from_ip("127.0.0.1", static_cast<unsigned short>(port)));
      co_await std::move(op);
    } catch (const std::exception& e) {
      say_exc("refused:", e, port);
    }
    ::close(c);
    ::close(holder);
  });
}

SCENARIO(open_connection_refused_on_127_0_0_1) {
  run([](loop::EventLoop&) -> loop::Coroutine<void> {
    auto [holder, port] = refused_port();
    try {
      auto conn = loop::open_connection("127.0.0.1", port);
      auto pair = co_await std::move(conn);
    } catch (const std::exception& e) {
      say_exc("refused:", e, port);
    }
    ::close(holder);
  });
}

SCENARIO(unix_connection_to_a_missing_path) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::string d = tmpdir();
    std::string path = d + "/missing.sock";
    try {
      auto conn = lp.create_unix_connection(make_proto, path);
      auto pair = co_await std::move(conn);
    } catch (const std::exception& e) {
      say_kind("missing:", e);
    }
    std::filesystem::remove_all(d);
  });
}

SCENARIO(unix_connection_to_a_socket_nobody_listens_on) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::string d = tmpdir();
    std::string path = d + "/dead.sock";
    int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto addr = loop::SocketAddress::from_unix_path(path);
    if (::bind(s, addr.data(), addr.size()) != 0) throw std::runtime_error("bind");
    try {
      auto conn = lp.create_unix_connection(make_proto, path);
      auto pair = co_await std::move(conn);
    } catch (const std::exception& e) {
      say_kind("refused:", e);
    }
    ::close(s);
    std::filesystem::remove_all(d);
  });
}

SCENARIO(create_server_bind_in_use) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto made = lp.create_server(make_proto, "127.0.0.1", 0);
    auto srv = co_await std::move(made);
    int port = srv->sockets().at(0).port();
    try {
      auto again = lp.create_server(make_proto, "127.0.0.1", port);
      auto srv2 = co_await std::move(again);
    } catch (const std::exception& e) {
      say_exc("in use:", e, port);
    }
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(create_connection_local_addr_in_use) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto made = lp.create_server(make_proto, "127.0.0.1", 0);
    auto srv = co_await std::move(made);
    int port = srv->sockets().at(0).port();
    loop::ConnectionOptions o;
    o.local_addr = std::make_pair(std::string("127.0.0.1"), port);
    try {
      auto conn = lp.create_connection(make_proto, "127.0.0.1", port, o);
      auto pair = co_await std::move(conn);
    } catch (const std::exception& e) {
      say_exc("local_addr in use:", e, port);
    }
    srv->close();
    co_await srv->wait_closed();
  });
}

SCENARIO(unix_server_on_a_regular_file) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::string d = tmpdir();
    std::string path = d + "/file";
    if (FILE* f = std::fopen(path.c_str(), "w")) {
      std::fputs("x", f);
      std::fclose(f);
    }
    try {
      auto made = lp.create_unix_server(make_proto, path);
      auto srv = co_await std::move(made);
    } catch (const std::exception& e) {
      say_exc("regular file:", e, -1, path);
    }
    say("file kept:", std::filesystem::is_regular_file(path));
    std::filesystem::remove_all(d);
  });
}

SCENARIO(unix_server_in_a_missing_directory) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    std::string d = tmpdir();
    std::string path = d + "/nodir/s.sock";
    try {
      auto made = lp.create_unix_server(make_proto, path);
      auto srv = co_await std::move(made);
    } catch (const std::exception& e) {
      say_kind("missing dir:", e);
    }
    std::filesystem::remove_all(d);
  });
}

SCENARIO(datagram_bind_in_use) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    loop::DatagramEndpointOptions o;
    o.local_addr = loop::HostPort{"127.0.0.1", 0};
    auto made = lp.create_datagram_endpoint(make_dproto, o);
    auto [t1, p1] = co_await std::move(made);
    int port = t1->extra<loop::SocketAddress>("sockname")->port();
    loop::DatagramEndpointOptions o2;
    o2.local_addr = loop::HostPort{"127.0.0.1", static_cast<unsigned short>(port)};
    try {
      auto again = lp.create_datagram_endpoint(make_dproto, o2);
      auto pair = co_await std::move(again);
    } catch (const std::exception& e) {
      say_kind("in use:", e);
    }
    t1->close();
  });
}

// ---- getaddrinfo / getnameinfo -----------------------------------------------------------------

SCENARIO(getaddrinfo_numeric_ipv4_every_type) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto q = lp.getaddrinfo("127.0.0.1", "8080");
    auto infos = co_await std::move(q);
    for (auto& i : infos) say(ai_line(i));
  });
}

SCENARIO(getaddrinfo_numeric_ipv6_port_as_string) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto q = lp.getaddrinfo("::1", "8080", 0, SOCK_STREAM);
    auto infos = co_await std::move(q);
    for (auto& i : infos) say(ai_line(i));
  });
}

SCENARIO(getaddrinfo_passive_without_host) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    for (int fam : {AF_INET, AF_INET6, AF_UNSPEC}) {
      auto q = lp.getaddrinfo("", "80", fam, SOCK_STREAM, 0, AI_PASSIVE);
      auto infos = co_await std::move(q);
      for (auto& i : infos) say(fam, ai_line(i));
    }
  });
}

SCENARIO(getaddrinfo_service_name_and_type_filters) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto q1 = lp.getaddrinfo("127.0.0.1", "http");
    auto http = co_await std::move(q1);
    for (auto& i : http) say("http:", ai_line(i));
    auto q2 = lp.getaddrinfo("127.0.0.1", "53", 0, SOCK_DGRAM);
    auto dgram = co_await std::move(q2);
    for (auto& i : dgram) say("dgram:", ai_line(i));
    auto q3 = lp.getaddrinfo("127.0.0.1", "53", 0, 0, IPPROTO_TCP);
    auto tcp = co_await std::move(q3);
    for (auto& i : tcp) say("tcp proto:", ai_line(i));
  });
}

SCENARIO(getaddrinfo_errors) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    struct Case {
      std::string label, host, port;
      int flags;
    };
    std::vector<Case> cases{{"bad service", "127.0.0.1", "nosuchservice", 0},
                            {"numerichost", "localhost", "80", AI_NUMERICHOST},
                            {"bad numeric", "127.0.0.256", "80", AI_NUMERICHOST},
                            {"numericserv", "127.0.0.1", "http", AI_NUMERICSERV}};
    for (auto& c : cases) {
      try {
        auto q = lp.getaddrinfo(c.host, c.port, 0, 0, 0, c.flags);
        auto infos = co_await std::move(q);
        say(c.label, "resolved?");
      } catch (const loop::GaiError& e) {
        const bool os_error = std::is_base_of_v<std::system_error, loop::GaiError>;
        say(c.label, "gaierror", os_error, e.code().value(), e.code().message());
      }
    }
  });
}

SCENARIO(getnameinfo_numeric_and_service_names) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    auto show = [](const std::string& label, const std::pair<std::string, std::string>& r) {
      say(label, "('" + r.first + "', '" + r.second + "')");
    };
    auto q1 = lp.getnameinfo(loop::SocketAddress::from_ip("127.0.0.1", 80),
                             NI_NUMERICHOST | NI_NUMERICSERV);
    auto r1 = co_await std::move(q1);
    show("numeric:", r1);
    auto q2 = lp.getnameinfo(loop::SocketAddress::from_ip("127.0.0.1", 80), NI_NUMERICHOST);
    auto r2 = co_await std::move(q2);
    show("service:", r2);
    auto q3 = lp.getnameinfo(loop::SocketAddress::from_ip("::1", 443), NI_NUMERICHOST);
    auto r3 = co_await std::move(q3);
    show("v6:", r3);
    auto q4 =
        lp.getnameinfo(loop::SocketAddress::from_ip("127.0.0.1", 53), NI_NUMERICHOST | NI_DGRAM);
    auto r4 = co_await std::move(q4);
    show("dgram:", r4);
  });
}

SCENARIO(create_connection_bad_numeric_host_flag) {
  run([](loop::EventLoop& lp) -> loop::Coroutine<void> {
    loop::ConnectionOptions o;
    o.flags = AI_NUMERICHOST;
    try {
      auto conn = lp.create_connection(make_proto, "localhost", 80, o);
      auto pair = co_await std::move(conn);
    } catch (const loop::GaiError& e) {
      const bool os_error = std::is_base_of_v<std::system_error, loop::GaiError>;
      say("gaierror", os_error, e.code().value(), e.code().message());
    }
  });
}

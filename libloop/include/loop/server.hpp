// loop::Server: the listening side of create_server / create_unix_server (asyncio.Server).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "loop/address.hpp"
#include "loop/coroutine.hpp"
#include "loop/protocols.hpp"

namespace loop {

class SSLContext;

class Server : public std::enable_shared_from_this<Server> {
 public:
  using ProtocolFactory = std::function<std::shared_ptr<Protocol>()>;

  /// Takes ownership of the bound (not yet listening) stream sockets `fds`. Made by
  /// create_server; not for direct use.
  Server(EventLoop& loop, std::vector<int> fds, ProtocolFactory factory, int backlog);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Stops listening and closes the listening sockets; connections already accepted stay
  /// open. A second call does nothing.
  void close();
  EventLoop& get_loop() const { return *loop_; }
  /// Starts accepting (idempotent).
  Coroutine<void> start_serving();
  /// Accepts until cancelled (close() cancels it too); its cancellation closes the server and
  /// does not wait for the connections (await wait_closed() for that). Only one per server
  /// (std::runtime_error otherwise, and on a closed server).
  Coroutine<void> serve_forever();
  bool is_serving() const { return serving_; }
  /// Returns once the server is closed and every connection it accepted is lost (asyncio
  /// 3.12's semantics; 3.11 did not wait for the connections).
  Coroutine<void> wait_closed();
  /// The addresses listened on (a copy); empty once closed.
  std::vector<SocketAddress> sockets() const;
  /// The listening sockets' file descriptors (a copy); empty once closed.
  std::vector<int> socket_fds() const;
  /// A small id unique within the process (trace records).
  std::uint64_t id() const { return id_; }

  // ---- For the transports it creates (asyncio's Server._attach/_detach) ----
  void attach() { ++active_count_; }
  void detach();
  std::size_t active_count() const { return active_count_; }
  /// For create_server's ssl option: every accepted connection gets the TLS layer.
  void set_ssl(std::shared_ptr<SSLContext> context, std::optional<double> handshake_timeout) {
    ssl_ = std::move(context);
    ssl_handshake_timeout_ = handshake_timeout;
  }

 private:
  struct Listener;
  void start_listening();  // asyncio's Server._start_serving
  void listen_on(Listener& l);
  void accept_ready(Listener& l);
  void accept_connection(int fd, SocketAddress peer);
  void wakeup();

  EventLoop* loop_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  bool closed_ = false;
  ProtocolFactory factory_;
  int backlog_;
  bool serving_ = false;
  std::size_t active_count_ = 0;
  std::vector<Future<void>> waiters_;
  bool waiters_done_ = false;
  std::optional<Future<void>> serving_forever_fut_;
  std::uint64_t id_;
  // ---- TLS (libloop/src/tls/ssl_socket.cpp) ----
  std::shared_ptr<SSLContext> ssl_;
  std::optional<double> ssl_handshake_timeout_;
};

/// Closes the server when the scope ends: the counterpart of `async with server:`. Await
/// server->wait_closed() after the scope to wait for its connections too.
class ServerGuard {
 public:
  explicit ServerGuard(std::shared_ptr<Server> server) : server_(std::move(server)) {}
  ~ServerGuard() {
    if (server_) server_->close();
  }
  ServerGuard(const ServerGuard&) = delete;
  ServerGuard& operator=(const ServerGuard&) = delete;
  Server& operator*() const { return *server_; }
  Server* operator->() const { return server_.get(); }

 private:
  std::shared_ptr<Server> server_;
};

}  // namespace loop

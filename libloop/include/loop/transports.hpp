// Transports: the loop's side of a connection (asyncio.BaseTransport and its subclasses).
//
// Ownership: the loop keeps a transport alive from connection_made until connection_lost has
// run; callers hold std::shared_ptr handles to it and to the protocol it drives.
#pragma once

#include <any>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loop/address.hpp"
#include "loop/protocols.hpp"

namespace loop {

class BaseTransport {
 public:
  virtual ~BaseTransport() = default;
  /// Optional information: "peername" and "sockname" (SocketAddress), "socket" (int fd),
  /// "pipe" (int fd), TLS ones arrive with ssl. Returns `default_value` when unknown.
  virtual std::any get_extra_info(std::string_view name, std::any default_value = {}) const = 0;
  virtual bool is_closing() const = 0;
  /// Closes after the buffered data is flushed; connection_lost(nullptr) follows.
  virtual void close() = 0;
  virtual void set_protocol(std::shared_ptr<BaseProtocol> protocol) = 0;
  virtual std::shared_ptr<BaseProtocol> get_protocol() const = 0;
  /// A shared handle to this transport, for APIs that keep one (start_tls) when all a protocol
  /// has is the reference connection_made gave it; null when the transport is not shared.
  virtual std::shared_ptr<BaseTransport> shared_transport() { return nullptr; }

  /// get_extra_info as a type: transport.extra<SocketAddress>("peername").
  template <class T>
  std::optional<T> extra(std::string_view name) const {
    std::any v = get_extra_info(name);
    if (auto* p = std::any_cast<T>(&v)) return *p;
    return std::nullopt;
  }
};

class ReadTransport : public virtual BaseTransport {
 public:
  virtual bool is_reading() const = 0;
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
};

class WriteTransport : public virtual BaseTransport {
 public:
  /// Buffers `data` and sends it without blocking: straight to the socket when nothing is
  /// queued, the remainder queued.
  virtual void write(std::string_view data) = 0;
  virtual void writelines(const std::vector<std::string_view>& list) {
    for (auto d : list) write(d);
  }
  /// Closes the write end after the buffered data is flushed.
  virtual void write_eof() = 0;
  virtual bool can_write_eof() const = 0;
  /// Closes at once: buffered data is lost; connection_lost(nullptr) follows.
  virtual void abort() = 0;
  virtual std::size_t get_write_buffer_size() const = 0;
  /// pause_writing at > high, resume_writing at <= low. With only `high`, low = high / 4;
  /// with neither, high = 64 KiB (asyncio's defaults).
  virtual void set_write_buffer_limits(std::optional<std::size_t> high = std::nullopt,
                                       std::optional<std::size_t> low = std::nullopt) = 0;
  virtual std::pair<std::size_t, std::size_t> get_write_buffer_limits() const = 0;
};

/// A bidirectional stream (asyncio.Transport).
class Transport : public ReadTransport, public WriteTransport {
 public:
  /// For start_tls (asyncio's _start_tls_compatible): from now on this transport refuses
  /// write, write_eof, set_protocol, pause/resume_reading and set_write_buffer_limits
  /// (std::runtime_error), so nothing can slip into the connection in plaintext or steal the
  /// TLS records; the returned transport is the TLS layer's own path to the same connection.
  /// close() and abort() still end the connection. Null: this transport cannot be upgraded.
  virtual std::shared_ptr<Transport> hand_over_to_tls() { return nullptr; }
};

/// A datagram transport (asyncio.DatagramTransport).
class DatagramTransport : public virtual BaseTransport {
 public:
  /// Sends to `addr`, or to the remote_addr given at creation when `addr` is empty.
  virtual void sendto(std::string_view data, std::optional<SocketAddress> addr = std::nullopt) = 0;
  virtual void abort() = 0;
  virtual std::size_t get_write_buffer_size() const = 0;
};

class SubprocessTransport : public virtual BaseTransport {
 public:
  virtual int get_pid() const = 0;
  virtual std::optional<int> get_returncode() const = 0;
  virtual BaseTransport* get_pipe_transport(int fd) const = 0;
  virtual void send_signal(int sig) = 0;
  virtual void terminate() = 0;
  virtual void kill() = 0;
};

}  // namespace loop

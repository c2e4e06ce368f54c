// Protocols: the callbacks a transport calls (asyncio.BaseProtocol and its subclasses).
// Every method has a default that does nothing, so a protocol overrides only what it uses.
#pragma once

#include <cstddef>
#include <exception>
#include <span>
#include <string_view>

#include "loop/address.hpp"

namespace loop {

class BaseTransport;
class Transport;
class DatagramTransport;

class BaseProtocol {
 public:
  virtual ~BaseProtocol() = default;
  /// The connection is made; `transport` stays valid until connection_lost returns.
  virtual void connection_made(BaseTransport& transport) { (void)transport; }
  /// The connection is lost or closed; `exc` is null for a regular EOF or close().
  virtual void connection_lost(std::exception_ptr exc) { (void)exc; }
  /// The transport's write buffer went over its high-water mark.
  virtual void pause_writing() {}
  /// ...and drained below its low-water mark.
  virtual void resume_writing() {}
};

/// A stream protocol (asyncio.Protocol).
class Protocol : public BaseProtocol {
 public:
  virtual void data_received(std::string_view data) { (void)data; }
  /// The peer sent EOF. Return true to keep the transport half-open (you close it later);
  /// false closes it (asyncio: a falsy return value).
  virtual bool eof_received() { return false; }
};

/// A stream protocol that lends its own buffer for reads (asyncio.BufferedProtocol): no copy.
class BufferedProtocol : public Protocol {
 public:
  /// A buffer to read into, at least `sizehint` bytes if sizehint > 0 (never empty).
  virtual std::span<char> get_buffer(std::size_t sizehint) = 0;
  /// `nbytes` bytes were written to the start of the last buffer get_buffer returned.
  virtual void buffer_updated(std::size_t nbytes) = 0;
};

/// A datagram protocol (asyncio.DatagramProtocol).
class DatagramProtocol : public BaseProtocol {
 public:
  virtual void datagram_received(std::string_view data, const SocketAddress& addr) {
    (void)data;
    (void)addr;
  }
  /// A previous send or receive failed (e.g. ECONNREFUSED from an ICMP port unreachable).
  virtual void error_received(std::exception_ptr exc) { (void)exc; }
};

/// A subprocess protocol (asyncio.SubprocessProtocol).
class SubprocessProtocol : public BaseProtocol {
 public:
  virtual void pipe_data_received(int fd, std::string_view data) {
    (void)fd;
    (void)data;
  }
  virtual void pipe_connection_lost(int fd, std::exception_ptr exc) {
    (void)fd;
    (void)exc;
  }
  virtual void process_exited() {}
};

}  // namespace loop

// The datagram transport on the loop's Poller: asyncio's _SelectorDatagramTransport.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "io/poller.hpp"
#include "loop/future.hpp"
#include "loop/protocol_slot.hpp"
#include "loop/transports.hpp"
#include "transports/transport_support.hpp"

namespace loop::detail {

class DatagramSocketTransport final : public DatagramTransport,
                                      public LoopResource,
                                      private PollWatcher,
                                      public std::enable_shared_from_this<DatagramSocketTransport> {
 public:
  std::shared_ptr<BaseTransport> shared_transport() override { return shared_from_this(); }
  /// Takes ownership of the non-blocking datagram socket `fd`. `address` is the remote_addr
  /// sendto defaults to (and insists on).
  DatagramSocketTransport(EventLoop& loop, int fd, std::shared_ptr<DatagramProtocol> protocol,
                          std::optional<SocketAddress> address);
  ~DatagramSocketTransport() override;
  void loop_destroyed() noexcept override;

  /// Schedules connection_made, then reading, then waiter's result (asyncio's __init__ order).
  void start(Future<void> waiter);

  // BaseTransport
  std::any get_extra_info(std::string_view name, std::any default_value = {}) const override;
  bool is_closing() const override { return closing_; }
  void close() override;
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_.shared(); }
  // DatagramTransport
  void sendto(std::string_view data, std::optional<SocketAddress> addr = std::nullopt) override;
  void abort() override { force_close(nullptr); }
  std::size_t get_write_buffer_size() const override { return buffer_size_; }

  std::uint64_t id() const { return id_; }

 private:
  // asyncio's max_size (256 KiB): AF_UNIX datagrams can exceed 64 KiB. The thread's read
  // buffer (kReadBufferSize) holds that much.
  static constexpr std::size_t kMaxSize = 256 * 1024;

  void connection_made();
  void poll_ready(bool readable, bool writable) override;
  void add_reader();
  void remove_reader();
  void add_writer();
  void remove_writer();
  void watch(std::uint32_t events);
  void close_socket() noexcept;  // out of the Poller, then close(2)
  void on_read_ready();          // the read handle
  void on_write_ready();         // the write handle
  void read_ready();             // asyncio's _read_ready
  void sendto_ready();           // asyncio's _sendto_ready
  ssize_t send_now(std::string_view data, const std::optional<SocketAddress>& addr);
  void maybe_pause_protocol();
  void maybe_resume_protocol();
  void force_close(std::exception_ptr exc);
  void call_connection_lost(std::exception_ptr exc);
  void error_received(std::exception_ptr exc);
  void check_loop() const;  // throws once the loop is destroyed

  EventLoop& loop_;  // not to be used once loop_gone_
  bool loop_gone_ = false;
  int fd_;  // owned: closed by close_socket
  bool open_ = true;
  PollEntry poll_;
  ProtocolSlot<DatagramProtocol> protocol_;
  std::optional<SocketAddress> address_;
  std::optional<SocketAddress> peername_;
  SocketAddress sockname_;
  std::uint64_t id_;

  std::deque<std::pair<std::string, std::optional<SocketAddress>>> buffer_;
  std::size_t buffer_size_ = 0;
  std::size_t high_water_ = 64 * 1024;
  std::size_t low_water_ = 16 * 1024;
  bool protocol_paused_ = false;

  bool closing_ = false;
  int conn_lost_ = 0;
  bool reading_ = false;
  bool writing_ = false;
  HandleRef read_handle_, write_handle_;
  // The loop keeps the transport alive from creation until connection_lost has run.
  std::shared_ptr<DatagramSocketTransport> self_;
};

}  // namespace loop::detail

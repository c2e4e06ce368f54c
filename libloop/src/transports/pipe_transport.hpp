// The pipe transports: asyncio's _UnixReadPipeTransport and _UnixWritePipeTransport on an
// asio::posix::stream_descriptor. Readiness comes from async_wait; its completion only queues
// the transport's persistent handle, which does the read(2)/write(2) as asyncio's
// _read_ready/_write_ready do.
#pragma once

#include <asio/posix/stream_descriptor.hpp>
#include <cstddef>
#include <memory>
#include <string>

#include "loop/future.hpp"
#include "loop/protocol_slot.hpp"
#include "loop/transports.hpp"
#include "transports/transport_support.hpp"

namespace loop::detail {

/// The kind of fd a pipe transport accepts; std::invalid_argument(message) otherwise.
/// Returns true if it is a socket.
bool check_pipe_fd(int fd, const char* message);

/// write(2) that never raises SIGPIPE: send(MSG_NOSIGNAL) on a socket; on a pipe, SIGPIPE is
/// blocked in this thread around the write and a SIGPIPE it raised is consumed, so that the
/// process-wide disposition (which belongs to the application) is left alone.
ssize_t write_no_sigpipe(int fd, bool is_socket, const char* data, std::size_t size);

class ReadPipeTransport final : public ReadTransport,
                                public LoopResource,
                                public std::enable_shared_from_this<ReadPipeTransport> {
 public:
  std::shared_ptr<BaseTransport> shared_transport() override { return shared_from_this(); }
  ReadPipeTransport(EventLoop& loop, int fd, std::shared_ptr<Protocol> protocol);
  ~ReadPipeTransport() override;
  void loop_destroyed() noexcept override;
  void start(Future<void> waiter);

  std::any get_extra_info(std::string_view name, std::any default_value = {}) const override;
  bool is_closing() const override { return closing_; }
  void close() override;
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_.shared(); }
  bool is_reading() const override { return !paused_ && !closing_; }
  void pause_reading() override;
  void resume_reading() override;

 private:
  static constexpr std::size_t kMaxSize = 64 * 1024;
  void add_reader();
  void arm_read();
  void on_read_ready();
  void read_ready();
  void fatal_error(std::exception_ptr exc, const char* message);
  void close_with(std::exception_ptr exc);
  void call_connection_lost(std::exception_ptr exc);

  EventLoop& loop_;
  asio::posix::stream_descriptor pipe_;
  int fd_;
  ProtocolSlot<Protocol> protocol_;
  std::uint64_t id_;
  bool closing_ = false, paused_ = false;
  bool reading_ = false, read_wait_pending_ = false;
  HandleRef read_handle_;
  std::shared_ptr<ReadPipeTransport> self_;
};

class WritePipeTransport final : public WriteTransport,
                                 public LoopResource,
                                 public std::enable_shared_from_this<WritePipeTransport> {
 public:
  std::shared_ptr<BaseTransport> shared_transport() override { return shared_from_this(); }
  WritePipeTransport(EventLoop& loop, int fd, std::shared_ptr<BaseProtocol> protocol);
  ~WritePipeTransport() override;
  void loop_destroyed() noexcept override;
  void start(Future<void> waiter);

  std::any get_extra_info(std::string_view name, std::any default_value = {}) const override;
  bool is_closing() const override { return closing_; }
  void close() override;
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
    protocol_.set(std::move(protocol));
  }
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_.shared(); }
  void write(std::string_view data) override;
  void write_eof() override;
  bool can_write_eof() const override { return true; }
  void abort() override { close_with(nullptr); }
  std::size_t get_write_buffer_size() const override { return buffer_.size() - buffer_pos_; }
  void set_write_buffer_limits(std::optional<std::size_t> high = std::nullopt,
                               std::optional<std::size_t> low = std::nullopt) override;
  std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
    return {low_water_, high_water_};
  }

 private:
  void arm_reader();       // the reader trick: readiness on our write end = the reader left
  void on_reader_event();  // asyncio's _read_ready: the pipe was closed by the peer
  void arm_write();
  void on_write_ready();  // asyncio's _write_ready
  void maybe_pause_protocol();
  void maybe_resume_protocol();
  void fatal_error(std::exception_ptr exc, const char* message);
  void close_with(std::exception_ptr exc);
  void call_connection_lost(std::exception_ptr exc);

  EventLoop& loop_;
  asio::posix::stream_descriptor pipe_;
  int fd_;
  bool is_socket_;
  bool watch_reader_;
  ProtocolSlot<BaseProtocol> protocol_;
  std::uint64_t id_;
  std::string buffer_;  // bytes [buffer_pos_, size) are pending
  std::size_t buffer_pos_ = 0;
  std::size_t high_water_ = 64 * 1024, low_water_ = 16 * 1024;
  bool protocol_paused_ = false;
  int conn_lost_ = 0;
  bool closing_ = false;  // close() or write_eof() was called
  bool lost_scheduled_ = false;
  bool reading_ = false, read_wait_pending_ = false;
  bool writing_ = false, write_wait_pending_ = false;
  HandleRef read_handle_, write_handle_;
  std::shared_ptr<WritePipeTransport> self_;
};

}  // namespace loop::detail

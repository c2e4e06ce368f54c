// SocketTransport: the stream transport for TCP and UNIX sockets (asyncio's
// _SelectorSocketTransport), watched by the loop's level-triggered Poller.
//
// The poll phase only tells us when the socket is readable/writable: it puts the transport's
// persistent read (or write) handle on the loop's ready queue, and that handle does the
// recv/send and calls the protocol - exactly where asyncio's _read_ready runs. The socket
// stays registered while it is read (no re-arming per read).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "io/poller.hpp"
#include "loop/future.hpp"
#include "loop/protocol_slot.hpp"
#include "loop/server.hpp"
#include "loop/transports.hpp"
#include "transports/socket_utils.hpp"

namespace loop::detail {

/// A process-wide small id for transports and servers in trace records.
std::uint64_t next_transport_id();

class SocketTransport final : public Transport,
                              public LoopResource,
                              private PollWatcher,
                              public std::enable_shared_from_this<SocketTransport> {
 public:
  void loop_destroyed() noexcept override;
  std::shared_ptr<BaseTransport> shared_transport() override { return shared_from_this(); }
  /// asyncio's recv size (max_size): one read per readiness event, at most this much.
  static constexpr std::size_t kMaxRead = 256 * 1024;  // into the thread's read buffer

  /// Takes ownership of the connected non-blocking socket `fd` (closed if this throws: EEXIST
  /// when add_reader watches it, std::invalid_argument for a protocol of the wrong kind).
  /// Call start() next.
  SocketTransport(EventLoop& loop, int fd, std::shared_ptr<Protocol> protocol,
                  std::shared_ptr<Server> server = nullptr,
                  std::optional<SocketAddress> peer = std::nullopt);
  ~SocketTransport() override;

  /// What asyncio's __init__ schedules: connection_made, then start reading, then the waiter.
  void start(std::optional<Future<void>> waiter);

  std::any get_extra_info(std::string_view name, std::any default_value = {}) const override;
  bool is_closing() const override { return closing_; }
  void close() override;
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_.shared(); }

  bool is_reading() const override { return !paused_ && !closing_; }
  void pause_reading() override;
  void resume_reading() override;

  void write(std::string_view data) override;
  void write_eof() override;
  bool can_write_eof() const override { return true; }
  void abort() override;
  std::size_t get_write_buffer_size() const override { return wbuf_.size() - wpos_; }
  void set_write_buffer_limits(std::optional<std::size_t> high = std::nullopt,
                               std::optional<std::size_t> low = std::nullopt) override;
  std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
    return {low_water_, high_water_};
  }

  std::uint64_t id() const { return id_; }
  int fd() const { return fd_; }
  EventLoop& loop() const { return *loop_; }
  /// For sendfile: a Future done once the write buffer is empty (asyncio's
  /// _make_empty_waiter); write() refuses data until reset_empty_waiter().
  Future<void> make_empty_waiter();
  void reset_empty_waiter() { empty_waiter_.reset(); }
  /// For sendfile through EventLoop::sock_sendfile, which watches the fd itself: the transport
  /// lets go of its reactor registration meanwhile (asyncio removes it from _transports).
  void detach_watcher();
  void attach_watcher();
  /// pause_writing was called and resume_writing not yet.
  bool protocol_paused() const { return protocol_paused_; }
  std::shared_ptr<Transport> hand_over_to_tls() override;
  /// start_tls took this transport over (see hand_over_to_tls).
  bool upgraded() const { return upgraded_; }

 private:
  class TlsPath;
  friend class TlsPath;
  /// The constructor's body (which closes the fd if this throws).
  void init(std::shared_ptr<Protocol> protocol, std::optional<SocketAddress> peer);
  /// Throws once start_tls took the transport over, unless the TLS layer is the caller.
  void refuse_if_upgraded(const char* method) const;
  void poll_ready(bool readable, bool writable) override;
  void add_reader();
  void remove_reader();
  void add_writer();
  void remove_writer();
  /// Registers `events` with the Poller (not while detached or closed); a refusal is fatal.
  void watch(std::uint32_t events);
  /// Closes the socket (out of the Poller first).
  void close_socket() noexcept;
  void read_ready();
  void read_ready_data_received();
  void read_ready_get_buffer();
  void read_ready_on_eof();
  void write_ready();
  void fatal_error(std::exception_ptr exc, bool os_error, const char* message);
  void force_close(std::exception_ptr exc);
  void call_connection_lost(std::exception_ptr exc);
  void maybe_pause_protocol();
  void maybe_resume_protocol();
  void consume(std::size_t n);

  EventLoop* loop_;
  int fd_;  // owned: closed with the transport (close_socket)
  PollEntry poll_;
  std::uint64_t id_;
  ProtocolSlot<Protocol> protocol_;
  BufferedProtocol* buffered_ = nullptr;  // protocol_ as a BufferedProtocol, if it is one
  std::shared_ptr<Server> server_;
  SocketAddress sockname_, peername_;
  std::shared_ptr<SocketTransport> self_;  // the loop's reference until connection_lost

  bool closing_ = false;
  bool paused_ = false;
  bool eof_ = false;  // write_eof() was called
  int conn_lost_ = 0;
  bool protocol_connected_ = true;

  // Readiness: "active" is asyncio's registration with the selector; "queued" the persistent
  // handle on the ready queue.
  bool reader_active_ = false, read_queued_ = false;
  // remove_reader() bumps read_gen_; the queued read runs only if it is unchanged since the
  // poll queued it (asyncio cancels the pending handle; level-triggered, the next poll
  // reports the socket again). The write side needs none: remove_writer runs in write_ready
  // itself or on the way to connection_lost, after which no add_writer comes.
  std::uint32_t read_gen_ = 0, read_queued_gen_ = 0;
  bool writer_active_ = false, write_queued_ = false;
  HandleRef read_handle_, write_handle_;
  int family_;
  bool detached_ = false;  // fd_ is not in the Poller (during sendfile)
  bool socket_closed_ = false;

  std::vector<char> wbuf_;  // pending bytes are wbuf_[wpos_..]
  std::size_t wpos_ = 0;

  bool protocol_paused_ = false;
  std::size_t high_water_ = 64 * 1024, low_water_ = 16 * 1024;
  std::optional<Future<void>> empty_waiter_;

  bool upgraded_ = false;
  int tls_path_calls_ = 0;  // > 0 while the TLS layer's path calls in
};

}  // namespace loop::detail

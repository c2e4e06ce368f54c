// DatagramSocketTransport: asyncio's _SelectorDatagramTransport on an asio socket.
//
// Readiness comes from asio's async_wait (the reactor); its completion only puts the
// transport's persistent read/write handle on the ready queue. The handle then does what
// asyncio's _read_ready/_sendto_ready do: one non-blocking recvfrom/sendto on the fd.
#include "transports/datagram_transport.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "loop/loop.hpp"
#include "transports/read_buffer.hpp"

namespace loop::detail {

DatagramSocketTransport::DatagramSocketTransport(EventLoop& loop, int fd, int family, int proto,
                                                 std::shared_ptr<DatagramProtocol> protocol,
                                                 std::optional<SocketAddress> address)
    : loop_(loop),
      sock_(loop.io_context()),
      fd_(fd),
      protocol_(std::move(protocol)),
      address_(std::move(address)),
      id_(next_transport_id()) {
  asio::error_code ec;
  loop.release_idle_fd_watch(fd);
  sock_.assign(asio::generic::datagram_protocol(family, proto), fd, ec);
  if (ec) throw std::system_error(ec, "cannot register the datagram socket");
  sock_.native_non_blocking(true, ec);
  SocketAddress a;
  socklen_t len = SocketAddress::capacity();
  if (::getsockname(fd, a.data(), &len) == 0) {
    a.set_size(len);
    sockname_ = a;
  }
  len = SocketAddress::capacity();
  if (::getpeername(fd, a.data(), &len) == 0) {
    a.set_size(len);
    peername_ = a;
  }
  read_handle_ = HandleRef(new IoHandle<DatagramSocketTransport>(
      this, &DatagramSocketTransport::on_read_ready, "DatagramTransport._read_ready"));
  write_handle_ = HandleRef(new IoHandle<DatagramSocketTransport>(
      this, &DatagramSocketTransport::on_write_ready, "DatagramTransport._sendto_ready"));
}

DatagramSocketTransport::~DatagramSocketTransport() {
  if (registered()) loop_.unregister_resource(this);
  static_cast<IoHandle<DatagramSocketTransport>*>(read_handle_.get())->detach();
  static_cast<IoHandle<DatagramSocketTransport>*>(write_handle_.get())->detach();
}

void DatagramSocketTransport::start(Future<void> waiter) {
  self_ = shared_from_this();
  loop_.register_resource(this);
  auto self = self_;
  loop_.call_soon(named("DatagramTransport.connection_made", [self] { self->connection_made(); }));
  // Only start reading once connection_made has run.
  loop_.call_soon(named("DatagramTransport._add_reader", [self] { self->add_reader(); }));
  loop_.call_soon(named("_set_result_unless_cancelled", [waiter] {
    if (!waiter.done()) waiter.set_result();
  }));
}

void DatagramSocketTransport::connection_made() {
  if (loop_.tracer()) {
    loop_.trace("connection_made",
                {{"transport", id_},
                 {"peer", peername_ ? nlohmann::json(peername_->to_string()) : nlohmann::json()},
                 {"local", sockname_.to_string()}});
  }
  if (protocol_) protocol_->connection_made(*this);
}

// ---- Reading -------------------------------------------------------------------------------

void DatagramSocketTransport::add_reader() {
  if (closing_ || conn_lost_) return;
  reading_ = true;
  arm_read();
}

void DatagramSocketTransport::arm_read() {
  if (!reading_ || read_wait_pending_ || !sock_.is_open()) return;
  read_wait_pending_ = true;
  sock_.async_wait(
      asio::socket_base::wait_read, [self = shared_from_this()](const asio::error_code& ec) {
        self->read_wait_pending_ = false;
        if (ec == asio::error::operation_aborted || !self->reading_) return;
        schedule_once(self->loop_,
                      static_cast<IoHandle<DatagramSocketTransport>*>(self->read_handle_.get()),
                      "DatagramTransport._read_ready");
      });
}

void DatagramSocketTransport::on_read_ready() {
  if (!reading_) return;
  // Wait again afterwards even if the protocol throws (the loop reports that exception).
  struct Rearm {
    DatagramSocketTransport& t;
    ~Rearm() { t.arm_read(); }
  } rearm{*this};
  read_ready();
}

void DatagramSocketTransport::read_ready() {
  if (conn_lost_) return;
  SocketAddress addr;
  socklen_t len = SocketAddress::capacity();
  char* buf = thread_read_buffer();
  ssize_t n = ::recvfrom(fd_, buf, kMaxSize, 0, addr.data(), &len);
  if (n < 0) {
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return;
    // e.g. ECONNREFUSED: an ICMP port unreachable for an earlier send on a connected socket.
    error_received(os_error(err, "recvfrom"));
    return;
  }
  addr.set_size(len);
  if (loop_.tracer()) {
    loop_.trace("datagram_received",
                {{"transport", id_}, {"bytes", n}, {"peer", addr.to_string()}});
  }
  protocol_->datagram_received(std::string_view(buf, static_cast<std::size_t>(n)), addr);
}

void DatagramSocketTransport::error_received(std::exception_ptr exc) {
  if (loop_.tracer())
    loop_.trace("error_received", {{"transport", id_}, {"reason", trace_reason(exc)}});
  protocol_->error_received(std::move(exc));
}

// ---- Writing -------------------------------------------------------------------------------

ssize_t DatagramSocketTransport::send_now(std::string_view data,
                                          const std::optional<SocketAddress>& addr) {
  if (peername_) return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
  return ::sendto(fd_, data.data(), data.size(), MSG_NOSIGNAL, addr->data(), addr->size());
}

void DatagramSocketTransport::sendto(std::string_view data, std::optional<SocketAddress> addr) {
  if (data.empty()) return;  // asyncio (<= 3.11) sends nothing for empty data
  if (address_) {
    if (addr && !(*addr == *address_))
      throw std::invalid_argument("Invalid address: must be None or " + address_->to_string());
    addr = address_;
  }
  if (!addr && !peername_)
    throw std::invalid_argument("sendto() needs an address: the endpoint has no remote_addr");
  if (conn_lost_ || !sock_.is_open()) {
    // asyncio counts (and later logs) sends after the connection was lost; nothing is sent.
    ++conn_lost_;
    return;
  }
  if (buffer_.empty()) {
    // Attempt to send it right away first.
    ssize_t n = send_now(data, addr);
    if (n >= 0) return;
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
      add_writer();
    } else {
      error_received(os_error(err, "sendto"));
      return;
    }
  }
  buffer_.emplace_back(std::string(data), std::move(addr));
  buffer_size_ += data.size();
  maybe_pause_protocol();
}

void DatagramSocketTransport::add_writer() {
  writing_ = true;
  arm_write();
}

void DatagramSocketTransport::arm_write() {
  if (!writing_ || write_wait_pending_ || !sock_.is_open()) return;
  write_wait_pending_ = true;
  sock_.async_wait(
      asio::socket_base::wait_write, [self = shared_from_this()](const asio::error_code& ec) {
        self->write_wait_pending_ = false;
        if (ec == asio::error::operation_aborted || !self->writing_) return;
        schedule_once(self->loop_,
                      static_cast<IoHandle<DatagramSocketTransport>*>(self->write_handle_.get()),
                      "DatagramTransport._sendto_ready");
      });
}

void DatagramSocketTransport::on_write_ready() {
  if (!writing_) return;
  sendto_ready();
  arm_write();
}

void DatagramSocketTransport::sendto_ready() {
  while (!buffer_.empty()) {
    auto& [data, addr] = buffer_.front();
    ssize_t n = send_now(data, addr);
    if (n < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) break;  // try again later
      buffer_size_ -= data.size();
      buffer_.pop_front();
      error_received(os_error(err, "sendto"));
      return;
    }
    buffer_size_ -= data.size();
    buffer_.pop_front();
  }
  maybe_resume_protocol();  // may append to the buffer
  if (buffer_.empty()) {
    remove_writer();
    if (closing_) call_connection_lost(nullptr);
  }
}

// ---- Flow control --------------------------------------------------------------------------

void DatagramSocketTransport::maybe_pause_protocol() {
  if (buffer_size_ <= high_water_ || protocol_paused_) return;
  protocol_paused_ = true;
  if (loop_.tracer())
    loop_.trace("pause_writing", {{"transport", id_}, {"buffered", buffer_size_}});
  try {
    protocol_->pause_writing();
  } catch (...) {
    ExceptionContext ctx;
    ctx.message = "protocol.pause_writing() failed";
    ctx.exception = std::current_exception();
    ctx.transport = this;
    ctx.protocol = protocol_.get();
    loop_.call_exception_handler(ctx);
  }
}

void DatagramSocketTransport::maybe_resume_protocol() {
  if (!protocol_paused_ || buffer_size_ > low_water_) return;
  protocol_paused_ = false;
  if (loop_.tracer())
    loop_.trace("resume_writing", {{"transport", id_}, {"buffered", buffer_size_}});
  try {
    protocol_->resume_writing();
  } catch (...) {
    ExceptionContext ctx;
    ctx.message = "protocol.resume_writing() failed";
    ctx.exception = std::current_exception();
    ctx.transport = this;
    ctx.protocol = protocol_.get();
    loop_.call_exception_handler(ctx);
  }
}

// ---- Closing -------------------------------------------------------------------------------

void DatagramSocketTransport::close() {
  if (closing_) return;
  closing_ = true;
  remove_reader();
  if (buffer_.empty()) {
    ++conn_lost_;
    remove_writer();
    auto self = shared_from_this();
    loop_.call_soon(named("DatagramTransport._call_connection_lost",
                          [self] { self->call_connection_lost(nullptr); }));
  }
}

void DatagramSocketTransport::force_close(std::exception_ptr exc) {
  if (conn_lost_) return;
  if (!buffer_.empty()) {
    buffer_.clear();
    buffer_size_ = 0;
    remove_writer();
  }
  if (!closing_) {
    closing_ = true;
    remove_reader();
  }
  ++conn_lost_;
  auto self = shared_from_this();
  loop_.call_soon(named("DatagramTransport._call_connection_lost",
                        [self, exc] { self->call_connection_lost(exc); }));
}

void DatagramSocketTransport::call_connection_lost(std::exception_ptr exc) {
  if (!sock_.is_open()) return;  // already done
  struct Finally {
    DatagramSocketTransport& t;
    ~Finally() {
      asio::error_code ec;
      t.sock_.close(ec);  // cancels the pending waits; their completions drop the last refs
      t.protocol_.reset();
      t.loop_.unregister_resource(&t);
      t.self_.reset();
    }
  } finally{*this};
  if (loop_.tracer())
    loop_.trace("connection_lost", {{"transport", id_}, {"reason", trace_reason(exc)}});
  if (protocol_) protocol_->connection_lost(exc);
}

// ---- The rest of BaseTransport -------------------------------------------------------------

std::any DatagramSocketTransport::get_extra_info(std::string_view name,
                                                 std::any default_value) const {
  if (name == "peername") return peername_ ? std::any(*peername_) : default_value;
  if (name == "sockname") return std::any(sockname_);
  if (name == "socket") return sock_.is_open() ? std::any(fd_) : default_value;
  return default_value;
}

void DatagramSocketTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
  auto p = std::dynamic_pointer_cast<DatagramProtocol>(protocol);
  if (!p) throw std::invalid_argument("a DatagramTransport needs a DatagramProtocol");
  protocol_ = std::move(p);
}

void DatagramSocketTransport::loop_destroyed() noexcept {
  asio::error_code ec;
  sock_.close(ec);
  auto protocol = std::move(protocol_);
  auto keep = std::move(self_);  // released last
}

}  // namespace loop::detail

// DatagramSocketTransport: asyncio's _SelectorDatagramTransport on the loop's Poller.
//
// The poll phase only puts the transport's persistent read/write handle on the ready queue
// (the socket stays registered, level-triggered: nothing is re-armed per datagram). The
// handle then does what asyncio's _read_ready/_sendto_ready do: one non-blocking
// recvfrom/sendto on the fd.
#include "transports/datagram_transport.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "loop/loop.hpp"
#include "transports/read_buffer.hpp"
#include "transports/socket_utils.hpp"

namespace loop::detail {

namespace {
// asyncio's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES.
constexpr int kLogThresholdForConnlostWrites = 5;
// What a buffered datagram counts for flow control besides its data (asyncio 3.13's
// _HEADER_SIZE): so that empty datagrams, which are sent too, still fill the buffer.
constexpr std::size_t kDatagramHeaderSize = 8;
}  // namespace

DatagramSocketTransport::DatagramSocketTransport(EventLoop& loop, int fd,
                                                 std::shared_ptr<DatagramProtocol> protocol,
                                                 std::optional<SocketAddress> address)
    : loop_(loop),
      fd_(fd),
      poll_(*this),
      protocol_(std::move(protocol)),
      address_(std::move(address)),
      id_(next_transport_id()) {
  set_nonblocking(fd);
  // Registered at once (throws EEXIST if add_reader watches this fd), watched from start().
  loop.release_idle_fd_watch(fd);
  loop.poller().watch(poll_, fd, EPOLLIN);
  loop.poller().unwatch(poll_, EPOLLIN);
  loop.set_fd_transport(fd, this);
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
  close_socket();
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
  protocol_.call_if_set([this](DatagramProtocol& p) { p.connection_made(*this); });
}

// ---- Reading -------------------------------------------------------------------------------

void DatagramSocketTransport::add_reader() {
  if (closing_ || conn_lost_) return;
  reading_ = true;
  watch(EPOLLIN);
}

void DatagramSocketTransport::remove_reader() {
  reading_ = false;
  // A closed socket is out of the Poller already (and its loop may be gone).
  if (open_) loop_.poller().unwatch(poll_, EPOLLIN);
}

void DatagramSocketTransport::add_writer() {
  writing_ = true;
  watch(EPOLLOUT);
}

void DatagramSocketTransport::remove_writer() {
  writing_ = false;
  if (open_) loop_.poller().unwatch(poll_, EPOLLOUT);
}

void DatagramSocketTransport::watch(std::uint32_t events) {
  if (!open_) return;
  try {
    loop_.poller().watch(poll_, fd_, events);
  } catch (const std::system_error& e) {
    force_close(std::make_exception_ptr(e));
  }
}

// The poll phase: queue the persistent handles, once each.
void DatagramSocketTransport::poll_ready(bool readable, bool writable) {
  using Handle = IoHandle<DatagramSocketTransport>;
  if (readable && reading_)
    schedule_once(loop_, static_cast<Handle*>(read_handle_.get()), "DatagramTransport._read_ready");
  if (writable && writing_)
    schedule_once(loop_, static_cast<Handle*>(write_handle_.get()),
                  "DatagramTransport._sendto_ready");
}

void DatagramSocketTransport::close_socket() noexcept {
  if (!open_) return;
  open_ = false;
  loop_.poller().remove(poll_);
  loop_.set_fd_transport(fd_, nullptr);
  ::close(fd_);
}

void DatagramSocketTransport::on_read_ready() {
  if (!reading_) return;
  read_ready();  // the socket stays watched (level-triggered)
}

void DatagramSocketTransport::read_ready() {
  if (conn_lost_) return;
  SocketAddress addr;
  socklen_t len = SocketAddress::capacity();
  char* buf = thread_read_buffer();
  static_assert(kMaxSize <= kReadBufferSize);
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
    loop_.trace_flat("datagram_received",
                     {{"transport", id_}, {"bytes", n}, {"peer", addr.to_string()}});
  }
  protocol_.call([&](DatagramProtocol& p) {
    p.datagram_received(std::string_view(buf, static_cast<std::size_t>(n)), addr);
  });
}

void DatagramSocketTransport::error_received(std::exception_ptr exc) {
  if (loop_.tracer())
    loop_.trace("error_received", {{"transport", id_}, {"reason", trace_reason(exc)}});
  protocol_.call([&](DatagramProtocol& p) { p.error_received(std::move(exc)); });
}

// ---- Writing -------------------------------------------------------------------------------

ssize_t DatagramSocketTransport::send_now(std::string_view data,
                                          const std::optional<SocketAddress>& addr) {
  if (peername_) return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
  return ::sendto(fd_, data.data(), data.size(), MSG_NOSIGNAL, addr->data(), addr->size());
}

void DatagramSocketTransport::sendto(std::string_view data, std::optional<SocketAddress> addr) {
  // An empty datagram is sent, as asyncio 3.13 does (3.7 to 3.12 dropped it): a UDP echo
  // server must answer one, and a zero-length datagram is a message of its own.
  if (address_) {
    if (addr && !(*addr == *address_))
      throw std::invalid_argument("Invalid address: must be None or " + address_->to_string());
    addr = address_;
  }
  if (!addr && !peername_)
    throw std::invalid_argument("sendto() needs an address: the endpoint has no remote_addr");
  // asyncio drops only on an endpoint with remote_addr; without one it keeps sending until
  // connection_lost closes the socket. It counts the drops and warns past a threshold.
  if (conn_lost_ && address_) {
    if (conn_lost_ >= kLogThresholdForConnlostWrites)
      std::fprintf(stderr, "loop: socket.send() raised exception.\n");
    ++conn_lost_;
    return;
  }
  if (!open_) return;  // connection_lost has closed the socket
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
  buffer_size_ += data.size() + kDatagramHeaderSize;
  maybe_pause_protocol();
}

void DatagramSocketTransport::on_write_ready() {
  if (!writing_) return;
  sendto_ready();
}

void DatagramSocketTransport::sendto_ready() {
  while (!buffer_.empty()) {
    auto& [data, addr] = buffer_.front();
    ssize_t n = send_now(data, addr);
    if (n < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) break;  // try again later
      buffer_size_ -= data.size() + kDatagramHeaderSize;
      buffer_.pop_front();
      error_received(os_error(err, "sendto"));
      return;
    }
    buffer_size_ -= data.size() + kDatagramHeaderSize;
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
    loop_.trace_flat("pause_writing", {{"transport", id_}, {"buffered", buffer_size_}});
  try {
    protocol_.call([](DatagramProtocol& p) { p.pause_writing(); });
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
    loop_.trace_flat("resume_writing", {{"transport", id_}, {"buffered", buffer_size_}});
  try {
    protocol_.call([](DatagramProtocol& p) { p.resume_writing(); });
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
    check_loop();
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
  if (!open_) {
    // connection_lost has run (nothing left to do), or the loop is gone.
    check_loop();
    return;
  }
  auto self = shared_from_this();
  loop_.call_soon(named("DatagramTransport._call_connection_lost",
                        [self, exc] { self->call_connection_lost(exc); }));
}

void DatagramSocketTransport::call_connection_lost(std::exception_ptr exc) {
  if (!open_) return;  // already done
  struct Finally {
    DatagramSocketTransport& t;
    ~Finally() {
      t.close_socket();
      t.protocol_.reset();
      t.loop_.unregister_resource(&t);
      t.self_.reset();
    }
  } finally{*this};
  if (loop_.tracer())
    loop_.trace("connection_lost", {{"transport", id_}, {"reason", trace_reason(exc)}});
  protocol_.call_if_set([&](DatagramProtocol& p) { p.connection_lost(exc); });
}

// ---- The rest of BaseTransport -------------------------------------------------------------

std::any DatagramSocketTransport::get_extra_info(std::string_view name,
                                                 std::any default_value) const {
  if (name == "peername") return peername_ ? std::any(*peername_) : default_value;
  if (name == "sockname") return std::any(sockname_);
  if (name == "socket") return open_ ? std::any(fd_) : default_value;
  return default_value;
}

void DatagramSocketTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
  auto p = std::dynamic_pointer_cast<DatagramProtocol>(protocol);
  if (!p) throw std::invalid_argument("a DatagramTransport needs a DatagramProtocol");
  protocol_.set(std::move(p));
}

void DatagramSocketTransport::check_loop() const {
  // asyncio's call_soon on a closed loop raises this; the loop_ reference is dangling.
  if (loop_gone_) throw std::runtime_error("Event loop is closed");
}

void DatagramSocketTransport::loop_destroyed() noexcept {
  loop_gone_ = true;
  close_socket();
  auto protocol = protocol_.take();
  auto keep = std::move(self_);  // released last
}

}  // namespace loop::detail

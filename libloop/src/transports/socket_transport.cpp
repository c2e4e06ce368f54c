// SocketTransport: asyncio's _SelectorSocketTransport on the loop's Poller.
#include "transports/socket_transport.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "loop/exception_context.hpp"
#include "transports/read_buffer.hpp"

namespace loop::detail {

namespace {

// asyncio's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES.
constexpr int kLogThresholdForConnlostWrites = 5;

bool would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

nlohmann::json reason_json(const std::exception_ptr& e) {
  if (!e) return nullptr;
  return describe_exception(e);
}

}  // namespace

std::uint64_t next_transport_id() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

SocketTransport::SocketTransport(EventLoop& loop, int fd, std::shared_ptr<Protocol> protocol,
                                 std::shared_ptr<Server> server, std::optional<SocketAddress> peer)
    : loop_(&loop), fd_(fd), poll_(*this), id_(next_transport_id()), server_(std::move(server)) {
  try {
    init(std::move(protocol), std::move(peer));
  } catch (...) {
    // The fd is ours from the call on (the callers released it): closed, not leaked.
    loop.poller().remove(poll_);
    loop.set_fd_transport(fd, nullptr);
    ::close(fd);
    throw;
  }
}

void SocketTransport::init(std::shared_ptr<Protocol> protocol, std::optional<SocketAddress> peer) {
  EventLoop& loop = *loop_;
  const int fd = fd_;
  // Registered for reading at once (throws EEXIST if add_reader watches this fd), but not
  // watched: reading starts one iteration later (start()), usually with no system call then.
  loop.release_idle_fd_watch(fd);
  sockname_ = sockname(fd);
  family_ = sockname_.family();
  const bool tcp = family_ == AF_INET || family_ == AF_INET6;
  // TCP: edge-triggered, with what level-triggering gave kept by hand (io/poller.hpp).
  poll_.edge = tcp;
  loop.poller().watch(poll_, fd, EPOLLIN);
  loop.poller().unwatch(poll_, EPOLLIN);
  loop.set_fd_transport(fd, this);
  peername_ = peer ? *peer : peername(fd);
  if (tcp) {
    // As asyncio's _set_nodelay: small writes go out at once (request/response latency).
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  set_protocol(std::move(protocol));
  if (server_) server_->attach();
  // The persistent handles: re-scheduled on every readiness event, never allocated again.
  read_handle_ = make_handle(named("_SelectorSocketTransport._read_ready", [this] {
    read_queued_ = false;
    // Removed since the poll queued it (even if added again): asyncio cancelled that handle.
    if (!reader_active_ || read_queued_gen_ != read_gen_) return;
    auto keep = shared_from_this();  // the protocol may drop the last other reference
    read_ready();
  }));
  read_handle_->kind = HandleKind::io;
  write_handle_ = make_handle(named("_SelectorSocketTransport._write_ready", [this] {
    write_queued_ = false;
    if (!writer_active_) return;
    auto keep = shared_from_this();  // connection_lost may run from write_ready
    write_ready();
  }));
  write_handle_->kind = HandleKind::io;
}

SocketTransport::~SocketTransport() {
  if (registered()) loop_->unregister_resource(this);
  close_socket();
  // A handle still on the ready queue must not call into a destroyed transport.
  read_handle_->cancelled = true;
  write_handle_->cancelled = true;
}

void SocketTransport::start(std::optional<Future<void>> waiter) {
  self_ = shared_from_this();
  loop_->register_resource(this);
  auto self = self_;
  if (loop_->tracer()) {
    std::string peer = peername_.size() ? peername_.to_string() : std::string();
    loop_->trace_flat("connection_made",
                      {{"transport", id_},
                       peer.empty() ? TraceField("peer", nullptr) : TraceField("peer", peer),
                       {"local", sockname_.to_string()}});
  }
  loop_->call_soon(named("Protocol.connection_made", [self] {
    self->protocol_.call_if_set([&](Protocol& p) { p.connection_made(*self); });
  }));
  loop_->call_soon(named("_SelectorSocketTransport._add_reader", [self] {
    if (self->is_reading()) self->add_reader();
  }));
  if (waiter) {
    loop_->call_soon([w = *waiter] {
      if (!w.done()) w.set_result();
    });
  }
}

std::any SocketTransport::get_extra_info(std::string_view name, std::any default_value) const {
  // getpeername failed (e.g. connect_accepted_socket on an unconnected socket): None in
  // asyncio, an empty std::any here, whatever default the caller gave.
  if (name == "peername") return peername_.size() ? std::any(peername_) : std::any();
  if (name == "sockname") return sockname_;
  if (name == "socket") return fd_;
  if (name == "transport_id") return id_;  // a layer on top (TLS) traces under this id
  return default_value;
}

void SocketTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
  refuse_if_upgraded("set_protocol");
  auto p = std::dynamic_pointer_cast<Protocol>(protocol);
  if (protocol && !p) throw std::invalid_argument("a stream transport needs a loop::Protocol");
  buffered_ = dynamic_cast<BufferedProtocol*>(p.get());  // before the old one may go
  protocol_.set(std::move(p));
  protocol_connected_ = true;
}

// ---- Readiness ---------------------------------------------------------------------------

void SocketTransport::add_reader() {
  reader_active_ = true;
  watch(EPOLLIN);
}

void SocketTransport::remove_reader() {
  reader_active_ = false;
  ++read_gen_;  // a read already queued is void: asyncio's _remove_reader cancels its handle
  loop_->poller().unwatch(poll_, EPOLLIN);
}

void SocketTransport::add_writer() {
  writer_active_ = true;
  watch(EPOLLOUT);
}

void SocketTransport::watch(std::uint32_t events) {
  if (detached_ || socket_closed_) return;  // attach_watcher registers what is active
  try {
    loop_->poller().watch(poll_, fd_, events);
  } catch (const std::system_error& e) {
    fatal_error(std::make_exception_ptr(e), true, "Fatal error watching the socket");
  }
}

void SocketTransport::remove_writer() {
  writer_active_ = false;
  loop_->poller().unwatch(poll_, EPOLLOUT);
}

// The poll phase: queue the persistent handles (once; level-triggered, the socket is reported
// again at the next poll if it is still ready after them).
void SocketTransport::poll_ready(bool readable, bool writable) {
  if (readable && reader_active_ && !read_queued_) {
    read_queued_ = true;
    read_queued_gen_ = read_gen_;
    loop_->schedule(read_handle_, "_read_ready");
  }
  if (writable && writer_active_ && !write_queued_) {
    write_queued_ = true;
    loop_->schedule(write_handle_, "_write_ready");
  }
}

void SocketTransport::close_socket() noexcept {
  if (socket_closed_) return;
  socket_closed_ = true;
  loop_->poller().remove(poll_);
  loop_->set_fd_transport(fd_, nullptr);
  ::close(fd_);
  // Nothing may reach the old number: the kernel hands it to the next socket opened.
  fd_ = -1;
  detached_ = false;
}

// ---- Reading -----------------------------------------------------------------------------

void SocketTransport::pause_reading() {
  refuse_if_upgraded("pause_reading");
  if (closing_ || paused_) return;
  paused_ = true;
  remove_reader();
  if (loop_->tracer()) loop_->trace_flat("pause_reading", {{"transport", id_}});
}

void SocketTransport::resume_reading() {
  refuse_if_upgraded("resume_reading");
  if (closing_ || !paused_) return;
  paused_ = false;
  add_reader();
  if (loop_->tracer()) loop_->trace_flat("resume_reading", {{"transport", id_}});
}

void SocketTransport::read_ready() {
  if (conn_lost_) return;
  if (buffered_)
    read_ready_get_buffer();
  else
    read_ready_data_received();
}

void SocketTransport::read_ready_data_received() {
  char* buf = thread_read_buffer();
  ssize_t n = ::recv(fd_, buf, kMaxRead, 0);
  if (n < 0) {
    if (would_block(errno)) return;
    fatal_error(std::make_exception_ptr(os_error(errno, "recv")), true,
                "Fatal read error on socket transport");
    return;
  }
  if (n == 0) return read_ready_on_eof();
  if (static_cast<std::size_t>(n) == kMaxRead) loop_->poller().recheck(poll_, EPOLLIN);
  if (loop_->tracer()) loop_->trace_flat("data_received", {{"transport", id_}, {"bytes", n}});
  try {
    protocol_.call(
        [&](Protocol& p) { p.data_received(std::string_view(buf, static_cast<std::size_t>(n))); });
  } catch (...) {
    fatal_error(std::current_exception(), false,
                "Fatal error: protocol.data_received() call failed.");
  }
}

void SocketTransport::read_ready_get_buffer() {
  // The buffer belongs to this protocol: it must outlive the recv even if get_buffer()
  // replaced it (set_protocol).
  ProtocolSlot<Protocol>::Call scope(protocol_);
  std::span<char> buf;
  try {
    buf = buffered_->get_buffer(0);
    if (buf.empty()) throw std::runtime_error("get_buffer() returned an empty buffer");
  } catch (...) {
    fatal_error(std::current_exception(), false, "Fatal error: protocol.get_buffer() call failed.");
    return;
  }
  ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
  if (n < 0) {
    if (would_block(errno)) return;
    fatal_error(std::make_exception_ptr(os_error(errno, "recv_into")), true,
                "Fatal read error on socket transport");
    return;
  }
  if (n == 0) return read_ready_on_eof();
  if (static_cast<std::size_t>(n) == buf.size()) loop_->poller().recheck(poll_, EPOLLIN);
  if (loop_->tracer()) loop_->trace_flat("data_received", {{"transport", id_}, {"bytes", n}});
  try {
    // asyncio calls the current protocol's buffer_updated: a plain Protocol set meanwhile
    // has none (AttributeError there), a fatal error as here.
    if (!buffered_) throw std::runtime_error("the protocol is not a BufferedProtocol");
    buffered_->buffer_updated(static_cast<std::size_t>(n));
  } catch (...) {
    fatal_error(std::current_exception(), false,
                "Fatal error: protocol.buffer_updated() call failed.");
  }
}

void SocketTransport::read_ready_on_eof() {
  if (loop_->tracer()) loop_->trace_flat("eof_received", {{"transport", id_}});
  bool keep_open = false;
  try {
    keep_open = protocol_.call([](Protocol& p) { return p.eof_received(); });
  } catch (...) {
    fatal_error(std::current_exception(), false,
                "Fatal error: protocol.eof_received() call failed.");
    return;
  }
  if (keep_open)
    remove_reader();  // half-open: the protocol closes when it is done writing
  else
    close();
}

// ---- Writing -----------------------------------------------------------------------------

void SocketTransport::write(std::string_view data) {
  refuse_if_upgraded("write");
  if (eof_) throw std::runtime_error("Cannot call write() after write_eof()");
  if (empty_waiter_) throw std::runtime_error("unable to write; sendfile is in progress");
  if (data.empty()) return;
  if (conn_lost_) {
    if (conn_lost_ >= kLogThresholdForConnlostWrites)
      std::fprintf(stderr, "loop: socket.send() raised exception.\n");
    ++conn_lost_;
    return;
  }
  if (socket_closed_) {
    // connection_lost ran from write_ready (close() with data buffered) or the loop is gone:
    // conn_lost_ is still 0, and asyncio's write() raises here too (_sock is None).
    throw std::runtime_error("write() on a transport whose socket is closed");
  }
  if (get_write_buffer_size() == 0) {
    // Straight to the socket; only what the kernel does not take is queued.
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (!would_block(errno)) {
        fatal_error(std::make_exception_ptr(os_error(errno, "send")), true,
                    "Fatal write error on socket transport");
        return;
      }
      n = 0;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
    if (data.empty()) return;
    add_writer();
  }
  if (wpos_ > 0 && wpos_ >= wbuf_.size() / 2) {
    // Reclaim the sent prefix instead of growing (the capacity stays: no allocation).
    wbuf_.erase(wbuf_.begin(), wbuf_.begin() + static_cast<std::ptrdiff_t>(wpos_));
    wpos_ = 0;
  }
  wbuf_.insert(wbuf_.end(), data.begin(), data.end());
  maybe_pause_protocol();
}

void SocketTransport::consume(std::size_t n) {
  wpos_ += n;
  if (wpos_ == wbuf_.size()) {
    wbuf_.clear();
    wpos_ = 0;
  }
}

void SocketTransport::write_ready() {
  if (conn_lost_ || socket_closed_) return;
  std::size_t size = get_write_buffer_size();
  if (size == 0) return;
  ssize_t n = ::send(fd_, wbuf_.data() + wpos_, size, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0) {
    if (would_block(errno)) return;
    int err = errno;
    remove_writer();
    wbuf_.clear();
    wpos_ = 0;
    fatal_error(std::make_exception_ptr(os_error(err, "send")), true,
                "Fatal write error on socket transport");
    if (empty_waiter_ && !empty_waiter_->done())
      empty_waiter_->set_exception(std::make_exception_ptr(os_error(err, "send")));
    return;
  }
  consume(static_cast<std::size_t>(n));
  maybe_resume_protocol();
  if (get_write_buffer_size() == 0) {
    remove_writer();
    if (empty_waiter_ && !empty_waiter_->done()) empty_waiter_->set_result();
    if (closing_) {
      call_connection_lost(nullptr);
    } else if (eof_) {
      ::shutdown(fd_, SHUT_WR);
    }
  }
}

void SocketTransport::write_eof() {
  refuse_if_upgraded("write_eof");
  if (closing_ || eof_) return;
  eof_ = true;
  if (loop_->tracer()) loop_->trace_flat("write_eof", {{"transport", id_}});
  if (get_write_buffer_size() == 0) ::shutdown(fd_, SHUT_WR);
}

// asyncio's _sendfile_native takes the transport out of loop._transports meanwhile, so that
// sock_sendfile may wait on its fd.
void SocketTransport::detach_watcher() {
  loop_->poller().remove(poll_);
  loop_->set_fd_transport(fd_, nullptr);
  detached_ = true;
}

void SocketTransport::attach_watcher() {
  if (!detached_) return;  // closed meanwhile: the fd is gone
  detached_ = false;
  loop_->release_idle_fd_watch(fd_);  // sock_sendfile waited on it with add_writer
  loop_->set_fd_transport(fd_, this);
  std::uint32_t events = (reader_active_ ? EPOLLIN : 0u) | (writer_active_ ? EPOLLOUT : 0u);
  if (events != 0) watch(events);
}

Future<void> SocketTransport::make_empty_waiter() {
  if (empty_waiter_) throw std::runtime_error("Empty waiter is already set");
  empty_waiter_ = loop_->create_future<void>();
  if (get_write_buffer_size() == 0) empty_waiter_->set_result();
  return *empty_waiter_;
}

// ---- Flow control (asyncio's _FlowControlMixin) ------------------------------------------

void SocketTransport::set_write_buffer_limits(std::optional<std::size_t> high,
                                              std::optional<std::size_t> low) {
  refuse_if_upgraded("set_write_buffer_limits");
  std::size_t h = high ? *high : (low ? 4 * *low : 64 * 1024);
  std::size_t l = low ? *low : h / 4;
  if (!(h >= l))
    throw std::invalid_argument("high (" + std::to_string(h) + ") must be >= low (" +
                                std::to_string(l) + ") must be >= 0");
  high_water_ = h;
  low_water_ = l;
  maybe_pause_protocol();
}

void SocketTransport::maybe_pause_protocol() {
  std::size_t size = get_write_buffer_size();
  if (size <= high_water_ || protocol_paused_) return;
  protocol_paused_ = true;
  if (loop_->tracer()) loop_->trace_flat("pause_writing", {{"transport", id_}, {"buffered", size}});
  try {
    protocol_.call([](Protocol& p) { p.pause_writing(); });
  } catch (...) {
    ExceptionContext ctx;
    ctx.message = "protocol.pause_writing() failed";
    ctx.exception = std::current_exception();
    ctx.transport = this;
    ctx.protocol = protocol_.get();
    loop_->call_exception_handler(ctx);
  }
}

void SocketTransport::maybe_resume_protocol() {
  std::size_t size = get_write_buffer_size();
  if (!protocol_paused_ || size > low_water_) return;
  protocol_paused_ = false;
  if (loop_->tracer())
    loop_->trace_flat("resume_writing", {{"transport", id_}, {"buffered", size}});
  try {
    protocol_.call([](Protocol& p) { p.resume_writing(); });
  } catch (...) {
    ExceptionContext ctx;
    ctx.message = "protocol.resume_writing() failed";
    ctx.exception = std::current_exception();
    ctx.transport = this;
    ctx.protocol = protocol_.get();
    loop_->call_exception_handler(ctx);
  }
}

// ---- Closing -----------------------------------------------------------------------------

void SocketTransport::close() {
  if (closing_) return;
  closing_ = true;
  remove_reader();
  if (get_write_buffer_size() == 0) {
    ++conn_lost_;
    remove_writer();
    loop_->call_soon(named("_SelectorTransport._call_connection_lost",
                           [self = shared_from_this()] { self->call_connection_lost(nullptr); }));
  }
}

void SocketTransport::abort() {
  force_close(nullptr);
}

void SocketTransport::fatal_error(std::exception_ptr exc, bool os_error, const char* message) {
  // Connection errors (resets, broken pipes) are an ordinary end of a connection: asyncio
  // logs them only in debug mode; anything else goes to the exception handler.
  if (os_error) {
    if (loop_->get_debug())  // asyncio: logger.debug("%r: %s", self, message, exc_info=True)
      std::fprintf(stderr, "loop: %s: %s: %s\n", describe_transport(*this).c_str(), message,
                   describe_exception(exc).c_str());
  } else {
    ExceptionContext ctx;
    ctx.message = message;
    ctx.exception = exc;
    ctx.transport = this;
    ctx.protocol = protocol_.get();
    loop_->call_exception_handler(ctx);
  }
  force_close(exc);
}

void SocketTransport::force_close(std::exception_ptr exc) {
  if (empty_waiter_ && !empty_waiter_->done()) {
    if (exc)
      empty_waiter_->set_exception(exc);
    else
      empty_waiter_->set_exception(
          std::make_exception_ptr(std::runtime_error("Connection is closed by peer")));
  }
  // Closed from write_ready (asyncio's abort() would then raise on its None _loop): the
  // connection is already lost, there is nothing left to do.
  if (conn_lost_ || socket_closed_) return;
  if (get_write_buffer_size() != 0) {
    wbuf_.clear();
    wpos_ = 0;
    remove_writer();
  }
  if (!closing_) {
    closing_ = true;
    remove_reader();
  }
  ++conn_lost_;
  loop_->call_soon(named("_SelectorTransport._call_connection_lost",
                         [self = shared_from_this(), exc] { self->call_connection_lost(exc); }));
}

void SocketTransport::call_connection_lost(std::exception_ptr exc) {
  // Whatever connection_lost does, the socket is closed and the references dropped after it
  // (asyncio's try/finally).
  struct Finally {
    SocketTransport& t;
    ~Finally() {
      t.close_socket();
      t.protocol_.reset();
      t.buffered_ = nullptr;
      if (auto server = std::move(t.server_)) server->detach();
      t.loop_->unregister_resource(&t);
      auto keep = std::move(t.self_);  // released last, when this scope ends
    }
  } finally{*this};
  if (loop_->tracer())
    loop_->trace("connection_lost", {{"transport", id_}, {"reason", reason_json(exc)}});
  if (protocol_connected_) protocol_.call_if_set([&](Protocol& p) { p.connection_lost(exc); });
}

void SocketTransport::loop_destroyed() noexcept {
  close_socket();
  // What is left may be kept by the application: as closed, with nothing buffered, so that
  // no method reaches the fd or the destroyed loop (write() raises, close() returns).
  closing_ = true;
  reader_active_ = writer_active_ = false;
  wbuf_.clear();
  wpos_ = 0;
  buffered_ = nullptr;
  auto protocol = protocol_.take();
  auto server = std::move(server_);
  auto keep = std::move(self_);  // released last
}

// ---- start_tls's hand-over ------------------------------------------------------------------

void SocketTransport::refuse_if_upgraded(const char* method) const {
  if (upgraded_ && tls_path_calls_ == 0)
    throw std::runtime_error(std::string("cannot ") + method +
                             "(): start_tls upgraded this transport; use the one it returned");
}

// The TLS layer's path to the connection: the same transport, with the refusal lifted while
// the call lasts.
class SocketTransport::TlsPath final : public Transport,
                                       public std::enable_shared_from_this<TlsPath> {
 public:
  explicit TlsPath(std::shared_ptr<SocketTransport> t) : t_(std::move(t)) {}

  std::any get_extra_info(std::string_view name, std::any default_value) const override {
    return t_->get_extra_info(name, std::move(default_value));
  }
  bool is_closing() const override { return t_->is_closing(); }
  void close() override { t_->close(); }
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
    Call c(*t_);
    t_->set_protocol(std::move(protocol));
  }
  std::shared_ptr<BaseProtocol> get_protocol() const override { return t_->get_protocol(); }
  std::shared_ptr<BaseTransport> shared_transport() override { return shared_from_this(); }
  bool is_reading() const override { return t_->is_reading(); }
  void pause_reading() override {
    Call c(*t_);
    t_->pause_reading();
  }
  void resume_reading() override {
    Call c(*t_);
    t_->resume_reading();
  }
  void write(std::string_view data) override {
    Call c(*t_);
    t_->write(data);
  }
  void write_eof() override {
    Call c(*t_);
    t_->write_eof();
  }
  bool can_write_eof() const override { return t_->can_write_eof(); }
  void abort() override { t_->abort(); }
  std::size_t get_write_buffer_size() const override { return t_->get_write_buffer_size(); }
  void set_write_buffer_limits(std::optional<std::size_t> high,
                               std::optional<std::size_t> low) override {
    Call c(*t_);
    t_->set_write_buffer_limits(high, low);
  }
  std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
    return t_->get_write_buffer_limits();
  }

 private:
  struct Call {
    SocketTransport& t;
    explicit Call(SocketTransport& s) : t(s) { ++t.tls_path_calls_; }
    ~Call() { --t.tls_path_calls_; }
  };
  std::shared_ptr<SocketTransport> t_;
};

std::shared_ptr<Transport> SocketTransport::hand_over_to_tls() {
  if (upgraded_) throw std::runtime_error("start_tls already upgraded this transport");
  upgraded_ = true;
  return std::make_shared<TlsPath>(shared_from_this());
}

}  // namespace loop::detail

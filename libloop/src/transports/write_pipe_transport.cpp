// WritePipeTransport: asyncio's _UnixWritePipeTransport.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "loop/loop.hpp"
#include "transports/pipe_transport.hpp"

namespace loop::detail {

namespace {
bool would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}
}  // namespace

WritePipeTransport::WritePipeTransport(EventLoop& loop, int fd,
                                       std::shared_ptr<BaseProtocol> protocol)
    : loop_(loop), pipe_(loop.io_context()), fd_(fd), protocol_(std::move(protocol)) {
  // Refused before taking the fd: the caller still owns a refused one (as asyncio).
  is_socket_ = check_pipe_fd(fd, "Pipe transport is only for pipes, sockets and character devices");
  struct stat st {};
  ::fstat(fd, &st);
  // The reader trick: our end becomes "readable" (EPOLLERR/EPOLLHUP) when the reader goes
  // away. It works for pipes and sockets, not for character devices.
  watch_reader_ = is_socket_ || S_ISFIFO(st.st_mode);
  id_ = next_transport_id();
  asio::error_code ec;
  loop.release_idle_fd_watch(fd);
  pipe_.assign(fd, ec);
  if (ec) throw std::system_error(ec, "cannot register the pipe");
  pipe_.native_non_blocking(true, ec);
  if (ec) throw std::system_error(ec, "cannot make the pipe non-blocking");
  read_handle_ = HandleRef(new IoHandle<WritePipeTransport>(
      this, &WritePipeTransport::on_reader_event, "WritePipeTransport._read_ready"));
  write_handle_ = HandleRef(new IoHandle<WritePipeTransport>(
      this, &WritePipeTransport::on_write_ready, "WritePipeTransport._write_ready"));
}

WritePipeTransport::~WritePipeTransport() {
  if (registered()) loop_.unregister_resource(this);
  static_cast<IoHandle<WritePipeTransport>*>(read_handle_.get())->detach();
  static_cast<IoHandle<WritePipeTransport>*>(write_handle_.get())->detach();
}

void WritePipeTransport::start(Future<void> waiter) {
  self_ = shared_from_this();
  loop_.register_resource(this);
  auto self = self_;
  loop_.call_soon(named("WritePipeTransport.connection_made", [self] {
    if (self->loop_.tracer())
      self->loop_.trace("connection_made",
                        {{"transport", self->id_}, {"peer", nullptr}, {"local", nullptr}});
    self->protocol_.call([&](BaseProtocol& p) { p.connection_made(*self); });
  }));
  if (watch_reader_) {
    loop_.call_soon(named("WritePipeTransport._add_reader", [self] {
      if (!self->pipe_.is_open() || self->lost_scheduled_) return;
      self->reading_ = true;
      self->arm_reader();
    }));
  }
  loop_.call_soon(named("_set_result_unless_cancelled", [waiter] {
    if (!waiter.done()) waiter.set_result();
  }));
}

// ---- The reader going away -----------------------------------------------------------------

void WritePipeTransport::arm_reader() {
  if (!reading_ || read_wait_pending_ || !pipe_.is_open()) return;
  read_wait_pending_ = true;
  pipe_.async_wait(asio::posix::descriptor_base::wait_read, [self = shared_from_this()](
                                                                const asio::error_code& ec) {
    self->read_wait_pending_ = false;
    if (ec == asio::error::operation_aborted || !self->reading_) return;
    schedule_once(self->loop_, static_cast<IoHandle<WritePipeTransport>*>(self->read_handle_.get()),
                  "WritePipeTransport._read_ready");
  });
}

void WritePipeTransport::on_reader_event() {
  if (!reading_) return;
  // The pipe was closed by the peer: what is still buffered can never be written.
  if (get_write_buffer_size() > 0)
    close_with(os_error(EPIPE, "write"));
  else
    close_with(nullptr);
}

// ---- Writing -------------------------------------------------------------------------------

void WritePipeTransport::write(std::string_view data) {
  if (data.empty()) return;
  if (conn_lost_ || closing_) {
    // asyncio counts (and eventually logs) writes after the pipe was closed; nothing is sent.
    ++conn_lost_;
    return;
  }
  if (get_write_buffer_size() == 0) {
    // Attempt to write it right away first.
    ssize_t n = write_no_sigpipe(fd_, is_socket_, data.data(), data.size());
    if (n < 0) {
      int err = errno;
      if (!would_block(err)) {
        ++conn_lost_;
        fatal_error(os_error(err, "write"), "Fatal write error on pipe transport");
        return;
      }
      n = 0;
    }
    if (static_cast<std::size_t>(n) == data.size()) return;
    data.remove_prefix(static_cast<std::size_t>(n));
    buffer_.clear();
    buffer_pos_ = 0;
    writing_ = true;
    arm_write();
  }
  buffer_.append(data);
  maybe_pause_protocol();
}

void WritePipeTransport::arm_write() {
  if (!writing_ || write_wait_pending_ || !pipe_.is_open()) return;
  write_wait_pending_ = true;
  pipe_.async_wait(asio::posix::descriptor_base::wait_write, [self = shared_from_this()](
                                                                 const asio::error_code& ec) {
    self->write_wait_pending_ = false;
    if (ec == asio::error::operation_aborted || !self->writing_) return;
    schedule_once(self->loop_,
                  static_cast<IoHandle<WritePipeTransport>*>(self->write_handle_.get()),
                  "WritePipeTransport._write_ready");
  });
}

void WritePipeTransport::on_write_ready() {
  if (!writing_) return;
  std::size_t pending = get_write_buffer_size();
  ssize_t n = write_no_sigpipe(fd_, is_socket_, buffer_.data() + buffer_pos_, pending);
  if (n < 0) {
    int err = errno;
    if (would_block(err)) {
      arm_write();
      return;
    }
    buffer_.clear();
    buffer_pos_ = 0;
    ++conn_lost_;
    writing_ = false;
    fatal_error(os_error(err, "write"), "Fatal write error on pipe transport");
    return;
  }
  if (static_cast<std::size_t>(n) == pending) {
    buffer_.clear();
    buffer_pos_ = 0;
    writing_ = false;
    maybe_resume_protocol();  // may append to the buffer
    if (closing_ && get_write_buffer_size() == 0) {
      reading_ = false;
      call_connection_lost(nullptr);
    }
    return;
  }
  buffer_pos_ += static_cast<std::size_t>(n);
  if (buffer_pos_ > buffer_.size() / 2) {  // keep the buffer from growing without bound
    buffer_.erase(0, buffer_pos_);
    buffer_pos_ = 0;
  }
  maybe_resume_protocol();
  arm_write();
}

// ---- Flow control --------------------------------------------------------------------------

void WritePipeTransport::set_write_buffer_limits(std::optional<std::size_t> high,
                                                 std::optional<std::size_t> low) {
  std::size_t h = high ? *high : (low ? 4 * *low : 64 * 1024);
  std::size_t l = low ? *low : h / 4;
  if (h < l)
    throw std::invalid_argument("high (" + std::to_string(h) + ") must be >= low (" +
                                std::to_string(l) + ") must be >= 0");
  high_water_ = h;
  low_water_ = l;
  maybe_pause_protocol();
}

void WritePipeTransport::maybe_pause_protocol() {
  if (get_write_buffer_size() <= high_water_ || protocol_paused_) return;
  protocol_paused_ = true;
  if (loop_.tracer())
    loop_.trace_flat("pause_writing", {{"transport", id_}, {"buffered", get_write_buffer_size()}});
  try {
    protocol_.call([](BaseProtocol& p) { p.pause_writing(); });
  } catch (...) {
    ExceptionContext ctx;
    ctx.message = "protocol.pause_writing() failed";
    ctx.exception = std::current_exception();
    ctx.transport = this;
    ctx.protocol = protocol_.get();
    loop_.call_exception_handler(ctx);
  }
}

void WritePipeTransport::maybe_resume_protocol() {
  if (!protocol_paused_ || get_write_buffer_size() > low_water_) return;
  protocol_paused_ = false;
  if (loop_.tracer())
    loop_.trace_flat("resume_writing", {{"transport", id_}, {"buffered", get_write_buffer_size()}});
  try {
    protocol_.call([](BaseProtocol& p) { p.resume_writing(); });
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

void WritePipeTransport::write_eof() {
  if (closing_) return;
  closing_ = true;
  if (loop_.tracer()) loop_.trace_flat("write_eof", {{"transport", id_}});
  if (get_write_buffer_size() == 0) {
    reading_ = false;
    lost_scheduled_ = true;
    auto self = shared_from_this();
    loop_.call_soon(named("WritePipeTransport._call_connection_lost",
                          [self] { self->call_connection_lost(nullptr); }));
  }
}

void WritePipeTransport::close() {
  // write_eof is all a write pipe needs to close.
  if (pipe_.is_open() && !closing_) write_eof();
}

void WritePipeTransport::fatal_error(std::exception_ptr exc, const char* message) {
  bool os = false;
  try {
    std::rethrow_exception(exc);
  } catch (const std::system_error&) {
    os = true;  // an OSError (EPIPE, ...) is the peer's doing: connection_lost says it
  } catch (...) {
  }
  if (!os) {
    ExceptionContext ctx;
    ctx.message = message;
    ctx.exception = exc;
    ctx.transport = this;
    ctx.protocol = protocol_.get();
    loop_.call_exception_handler(ctx);
  }
  close_with(exc);
}

void WritePipeTransport::close_with(std::exception_ptr exc) {
  closing_ = true;
  buffer_.clear();
  buffer_pos_ = 0;
  writing_ = false;
  reading_ = false;
  lost_scheduled_ = true;
  auto self = shared_from_this();
  loop_.call_soon(named("WritePipeTransport._call_connection_lost",
                        [self, exc] { self->call_connection_lost(exc); }));
}

void WritePipeTransport::call_connection_lost(std::exception_ptr exc) {
  if (!pipe_.is_open()) return;  // already done (write_eof and abort both scheduled it)
  struct Finally {
    WritePipeTransport& t;
    ~Finally() {
      asio::error_code ec;
      t.pipe_.close(ec);  // the transport owns the fd, as asyncio closes the pipe
      t.protocol_.reset();
      t.loop_.unregister_resource(&t);
      t.self_.reset();
    }
  } finally{*this};
  if (loop_.tracer())
    loop_.trace("connection_lost", {{"transport", id_}, {"reason", trace_reason(exc)}});
  protocol_.call([&](BaseProtocol& p) { p.connection_lost(exc); });
}

std::any WritePipeTransport::get_extra_info(std::string_view name, std::any default_value) const {
  if (name == "pipe") return pipe_.is_open() ? std::any(fd_) : default_value;
  return default_value;
}

void WritePipeTransport::loop_destroyed() noexcept {
  asio::error_code ec;
  pipe_.close(ec);
  auto protocol = protocol_.take();
  auto keep = std::move(self_);  // released last
}

}  // namespace loop::detail

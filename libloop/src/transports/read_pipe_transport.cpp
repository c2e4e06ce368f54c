// ReadPipeTransport: asyncio's _UnixReadPipeTransport.
#include <unistd.h>

#include <cerrno>

#include "loop/loop.hpp"
#include "transports/pipe_transport.hpp"
#include "transports/read_buffer.hpp"

namespace loop::detail {

ReadPipeTransport::ReadPipeTransport(EventLoop& loop, int fd, std::shared_ptr<Protocol> protocol)
    : loop_(loop), pipe_(loop.io_context()), fd_(fd), protocol_(std::move(protocol)) {
  // Refused before taking the fd: the caller still owns a refused one (as asyncio).
  check_pipe_fd(fd, "Pipe transport is for pipes/sockets only.");
  id_ = next_transport_id();
  asio::error_code ec;
  loop.release_idle_fd_watch(fd);
  pipe_.assign(fd, ec);
  if (ec) throw std::system_error(ec, "cannot register the pipe");
  pipe_.native_non_blocking(true, ec);
  if (ec) throw std::system_error(ec, "cannot make the pipe non-blocking");
  read_handle_ = HandleRef(new IoHandle<ReadPipeTransport>(this, &ReadPipeTransport::on_read_ready,
                                                           "ReadPipeTransport._read_ready"));
}

ReadPipeTransport::~ReadPipeTransport() {
  if (registered()) loop_.unregister_resource(this);
  static_cast<IoHandle<ReadPipeTransport>*>(read_handle_.get())->detach();
}

void ReadPipeTransport::start(Future<void> waiter) {
  self_ = shared_from_this();
  loop_.register_resource(this);
  auto self = self_;
  loop_.call_soon(named("ReadPipeTransport.connection_made", [self] {
    if (self->loop_.tracer())
      self->loop_.trace("connection_made",
                        {{"transport", self->id_}, {"peer", nullptr}, {"local", nullptr}});
    self->protocol_.call([&](Protocol& p) { p.connection_made(*self); });
  }));
  // Only start reading once connection_made has run.
  loop_.call_soon(named("ReadPipeTransport._add_reader", [self] { self->add_reader(); }));
  loop_.call_soon(named("_set_result_unless_cancelled", [waiter] {
    if (!waiter.done()) waiter.set_result();
  }));
}

void ReadPipeTransport::add_reader() {
  if (!is_reading()) return;
  reading_ = true;
  arm_read();
}

void ReadPipeTransport::arm_read() {
  if (!reading_ || read_wait_pending_ || !pipe_.is_open()) return;
  read_wait_pending_ = true;
  pipe_.async_wait(asio::posix::descriptor_base::wait_read, [self = shared_from_this()](
                                                                const asio::error_code& ec) {
    self->read_wait_pending_ = false;
    if (ec == asio::error::operation_aborted || !self->reading_) return;
    schedule_once(self->loop_, static_cast<IoHandle<ReadPipeTransport>*>(self->read_handle_.get()),
                  "ReadPipeTransport._read_ready");
  });
}

void ReadPipeTransport::on_read_ready() {
  if (!reading_) return;
  struct Rearm {
    ReadPipeTransport& t;
    ~Rearm() { t.arm_read(); }
  } rearm{*this};
  read_ready();
}

void ReadPipeTransport::read_ready() {
  char* buf = thread_read_buffer();
  ssize_t n = ::read(fd_, buf, kMaxSize);
  if (n < 0) {
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return;
    fatal_error(os_error(err, "read"), "Fatal read error on pipe transport");
    return;
  }
  if (n > 0) {
    if (loop_.tracer()) loop_.trace_flat("data_received", {{"transport", id_}, {"bytes", n}});
    protocol_.call(
        [&](Protocol& p) { p.data_received(std::string_view(buf, static_cast<std::size_t>(n))); });
    return;
  }
  // EOF: the writer closed its end.
  closing_ = true;
  reading_ = false;
  auto self = shared_from_this();
  loop_.call_soon(named("ReadPipeTransport.eof_received", [self] {
    if (self->loop_.tracer()) self->loop_.trace_flat("eof_received", {{"transport", self->id_}});
    // Its answer does not matter here.
    self->protocol_.call_if_set([](Protocol& p) { p.eof_received(); });
  }));
  loop_.call_soon(named("ReadPipeTransport._call_connection_lost",
                        [self] { self->call_connection_lost(nullptr); }));
}

void ReadPipeTransport::pause_reading() {
  if (!is_reading()) return;
  paused_ = true;
  reading_ = false;
  if (loop_.tracer()) loop_.trace_flat("pause_reading", {{"transport", id_}});
}

void ReadPipeTransport::resume_reading() {
  if (closing_ || !paused_) return;
  paused_ = false;
  if (loop_.tracer()) loop_.trace_flat("resume_reading", {{"transport", id_}});
  reading_ = true;
  arm_read();
}

void ReadPipeTransport::close() {
  if (!closing_) close_with(nullptr);
}

void ReadPipeTransport::fatal_error(std::exception_ptr exc, const char* message) {
  bool is_eio = false;
  try {
    std::rethrow_exception(exc);
  } catch (const std::system_error& e) {
    is_eio = e.code().value() == EIO;  // a pty whose other side closed: not worth a report
  } catch (...) {
  }
  if (!is_eio) {
    ExceptionContext ctx;
    ctx.message = message;
    ctx.exception = exc;
    ctx.transport = this;
    ctx.protocol = protocol_.get();
    loop_.call_exception_handler(ctx);
  }
  close_with(exc);
}

void ReadPipeTransport::close_with(std::exception_ptr exc) {
  closing_ = true;
  reading_ = false;
  auto self = shared_from_this();
  loop_.call_soon(named("ReadPipeTransport._call_connection_lost",
                        [self, exc] { self->call_connection_lost(exc); }));
}

void ReadPipeTransport::call_connection_lost(std::exception_ptr exc) {
  if (!pipe_.is_open()) return;
  struct Finally {
    ReadPipeTransport& t;
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
  protocol_.call([&](Protocol& p) { p.connection_lost(exc); });
}

std::any ReadPipeTransport::get_extra_info(std::string_view name, std::any default_value) const {
  if (name == "pipe") return pipe_.is_open() ? std::any(fd_) : default_value;
  return default_value;
}

void ReadPipeTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
  auto p = std::dynamic_pointer_cast<Protocol>(protocol);
  if (!p) throw std::invalid_argument("a read pipe transport needs a Protocol");
  protocol_.set(std::move(p));
}

void ReadPipeTransport::loop_destroyed() noexcept {
  asio::error_code ec;
  pipe_.close(ec);
  auto protocol = protocol_.take();
  auto keep = std::move(self_);  // released last
}

}  // namespace loop::detail

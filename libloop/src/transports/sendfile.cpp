// EventLoop::sendfile: asyncio's loop.sendfile. Plain socket transports send with
// sock_sendfile (sendfile(2)) once their buffer is flushed; any other transport - and any
// file sendfile(2) refuses - goes through the read-and-write fallback.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "io/io_buffer.hpp"
#include "loop/loop.hpp"
#include "transports/socket_transport.hpp"

namespace loop {

namespace {

// asyncio's _sendfile_native for _SelectorSocketTransport: reading paused, the buffer
// flushed, the fd handed to sock_sendfile, everything restored afterwards.
Coroutine<std::size_t> sendfile_native(EventLoop& loop, detail::SocketTransport& t, int file_fd,
                                       std::size_t offset, std::optional<std::size_t> count) {
  auto keep = t.shared_from_this();
  bool resume_reading = t.is_reading();
  t.pause_reading();
  std::exception_ptr error;
  std::size_t sent = 0;
  try {
    co_await t.make_empty_waiter();
    t.detach_watcher();
    sent = co_await loop.sock_sendfile(t.fd(), file_fd, offset, count, false);
  } catch (...) {
    error = std::current_exception();
  }
  t.attach_watcher();
  t.reset_empty_waiter();
  if (resume_reading) t.resume_reading();
  if (error) std::rethrow_exception(error);
  co_return sent;
}

// asyncio's _SendfileFallbackProtocol: stands in for the protocol while the fallback writes,
// so that the transport's pause/resume_writing reach the sending loop.
class FallbackProtocol : public Protocol {
 public:
  FallbackProtocol(EventLoop& loop, Transport& t) : loop_(loop), t_(t) {
    proto_ = t.get_protocol();
    should_resume_reading_ = t.is_reading();
    auto* st = dynamic_cast<detail::SocketTransport*>(&t);
    should_resume_writing_ =
        st ? st->protocol_paused() : t.get_write_buffer_size() > t.get_write_buffer_limits().second;
    t.pause_reading();
    if (should_resume_writing_) write_ready_ = loop_.create_future<void>();
  }
  void install(std::shared_ptr<FallbackProtocol> self) { t_.set_protocol(std::move(self)); }

  Coroutine<void> drain() {
    if (t_.is_closing()) throw std::runtime_error("Connection closed by peer");
    if (!write_ready_) co_return;
    Future<void> fut = *write_ready_;
    co_await fut;
  }
  void restore() {
    t_.set_protocol(proto_);
    if (should_resume_reading_) t_.resume_reading();
    if (write_ready_) write_ready_->cancel();
    if (should_resume_writing_ && proto_) proto_->resume_writing();
  }

  void connection_made(BaseTransport&) override {
    throw std::runtime_error("Invalid state: connection should have been established already.");
  }
  void connection_lost(std::exception_ptr exc) override {
    if (write_ready_ && !write_ready_->done())
      write_ready_->set_exception(
          exc ? exc : std::make_exception_ptr(std::runtime_error("Connection is closed by peer")));
    if (proto_) proto_->connection_lost(exc);
  }
  void pause_writing() override {
    if (!write_ready_) write_ready_ = loop_.create_future<void>();
  }
  void resume_writing() override {
    if (!write_ready_) return;
    if (!write_ready_->done()) write_ready_->set_result();
    write_ready_.reset();
  }
  void data_received(std::string_view) override {
    throw std::runtime_error("Invalid state: reading should be paused");
  }
  bool eof_received() override {
    throw std::runtime_error("Invalid state: reading should be paused");
  }

 private:
  EventLoop& loop_;
  Transport& t_;
  std::shared_ptr<BaseProtocol> proto_;
  bool should_resume_reading_ = false, should_resume_writing_ = false;
  std::optional<Future<void>> write_ready_;
};

std::size_t pread_chunk(int fd, std::shared_ptr<detail::IoBuffer> buf, std::size_t n, off_t at) {
  for (;;) {
    ssize_t got = ::pread(fd, buf->data(), n, at);
    if (got < 0 && errno == ESPIPE) got = ::read(fd, buf->data(), n);  // a pipe: in order
    if (got >= 0) return static_cast<std::size_t>(got);
    if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "sendfile: read");
  }
}

// asyncio's _sendfile_fallback: read a block in the executor, wait for the transport to take
// more, write it; the file position ends after what was sent.
Coroutine<std::size_t> sendfile_fallback(EventLoop& loop, Transport& t, int file_fd,
                                         std::size_t offset, std::optional<std::size_t> count) {
  std::size_t blocksize = count ? std::min<std::size_t>(*count, 16384) : 16384;
  if (blocksize == 0) co_return 0;
  // A TLS transport belongs to its SSL layer, which lets go of it at connection_lost; the
  // caller's protocol may then cancel us, and restore() below still needs the transport.
  // (Null for an application's own transport: its lifetime is the application's.)
  std::shared_ptr<BaseTransport> keep = t.shared_transport();
  auto buf = std::make_shared<detail::IoBuffer>(blocksize);  // page-aligned: io/io_buffer.hpp
  std::size_t total_sent = 0;
  auto proto = std::make_shared<FallbackProtocol>(loop, t);
  proto->install(proto);
  std::exception_ptr error;
  try {
    for (;;) {
      if (count) {
        blocksize = std::min(*count - total_sent, blocksize);
        if (blocksize == 0) break;
      }
      off_t at = static_cast<off_t>(offset + total_sent);
      std::size_t n = blocksize;
      std::size_t got = co_await loop.run_in_executor(nullptr, &pread_chunk, file_fd, buf, n, at);
      if (got == 0) break;
      co_await proto->drain();
      t.write(std::string_view(buf->data(), got));
      total_sent += got;
    }
  } catch (...) {
    error = std::current_exception();
  }
  if (total_sent > 0) ::lseek(file_fd, static_cast<off_t>(offset + total_sent), SEEK_SET);
  proto->restore();
  if (error) std::rethrow_exception(error);
  co_return total_sent;
}

}  // namespace

Coroutine<std::size_t> EventLoop::sendfile(Transport& transport, int file_fd, std::size_t offset,
                                           std::optional<std::size_t> count, bool fallback) {
  check_closed();
  // As sock_sendfile (asyncio's native path; its fallback took 0 for "to EOF"): refused for
  // every kind of transport alike.
  if (count && *count == 0) throw std::invalid_argument("count must be a positive integer (got 0)");
  if (transport.is_closing()) throw std::runtime_error("Transport is closing");
  auto* st = dynamic_cast<detail::SocketTransport*>(&transport);
  if (st && st->upgraded())
    throw std::runtime_error(
        "cannot sendfile(): start_tls upgraded this transport; use the one it returned");
  if (st) {
    bool unavailable = false;
    std::size_t sent = 0;
    try {
      sent = co_await sendfile_native(*this, *st, file_fd, offset, count);
    } catch (const SendfileNotAvailableError&) {
      if (!fallback) throw;
      unavailable = true;
    }
    if (!unavailable) co_return sent;
  } else if (!fallback) {
    // A TLS transport among others. asyncio raises RuntimeError here, of which
    // SendfileNotAvailableError is a kind.
    throw SendfileNotAvailableError(
        "fallback is disabled and native sendfile is not supported for this transport");
  }
  co_return co_await sendfile_fallback(*this, transport, file_fd, offset, count);
}

}  // namespace loop

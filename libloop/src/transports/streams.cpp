// Streams: asyncio's streams.py (StreamReader, StreamReaderProtocol, StreamWriter,
// open_connection, start_server) on loop::Transport.
#include "loop/streams.hpp"

#include <cerrno>
#include <system_error>

#include "loop/loop.hpp"
#include "transports/socket_transport.hpp"

namespace loop {

// ---- StreamReader --------------------------------------------------------------------------

StreamReader::StreamReader(EventLoop& loop, std::size_t limit) : loop_(loop), limit_(limit) {
  if (limit == 0) throw std::invalid_argument("Limit cannot be <= 0");
}

void StreamReader::wakeup_waiter() {
  if (!waiter_) return;
  Future<void> w = *waiter_;
  waiter_.reset();
  if (!w.done()) w.set_result();
}

void StreamReader::set_exception(std::exception_ptr exc) {
  exception_ = exc;
  if (!waiter_) return;
  Future<void> w = *waiter_;
  waiter_.reset();
  if (!w.done()) w.set_exception(exc);
}

void StreamReader::feed_eof() {
  eof_ = true;
  wakeup_waiter();
}

void StreamReader::feed_data(std::string_view data) {
  if (data.empty()) return;
  buffer_.append(data);
  wakeup_waiter();
  // Flow control: stop reading the socket while the consumer lags behind.
  if (transport_ && !paused_ && buffer_.size() > 2 * limit_) {
    transport_->pause_reading();
    paused_ = true;
  }
}

void StreamReader::reuse_storage(std::string&& storage) noexcept {
  if (!buffer_.empty() || storage.capacity() <= buffer_.capacity() || storage.capacity() > limit_)
    return;
  storage.clear();
  buffer_.swap(storage);
}

void StreamReader::maybe_resume_transport() {
  if (paused_ && buffer_.size() <= limit_) {
    paused_ = false;
    if (transport_) transport_->resume_reading();
  }
}

// Awaits the waiter future, and clears waiter_ (if still this one) before the await's result
// or exception reaches the caller, as asyncio's _wait_for_data does in its finally.
class StreamReader::DataWait {
 public:
  DataWait(StreamReader& reader, const Future<void>& waiter,
           std::shared_ptr<StreamReader>& keep_alive)
      : reader_(reader), awaiter_{waiter.state()}, keep_alive_(keep_alive) {}
  bool await_ready() const noexcept { return awaiter_.await_ready(); }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    if (!keep_alive_) keep_alive_ = reader_.weak_from_this().lock();
    try {
      awaiter_.await_suspend(h);
    } catch (...) {
      forget_waiter();
      throw;
    }
  }
  void await_resume() {
    forget_waiter();
    awaiter_.await_resume();
  }

 private:
  void forget_waiter() {
    if (reader_.waiter_ && reader_.waiter_->state() == awaiter_.state) reader_.waiter_.reset();
  }
  StreamReader& reader_;
  detail::FutureAwaiter<void> awaiter_;
  std::shared_ptr<StreamReader>& keep_alive_;
};

StreamReader::DataWait StreamReader::wait_for_data(const char* func_name,
                                                   std::shared_ptr<StreamReader>& keep_alive) {
  if (waiter_)
    throw std::runtime_error(std::string(func_name) +
                             "() called while another coroutine is already waiting for "
                             "incoming data");
  if (paused_) {
    paused_ = false;
    if (transport_) transport_->resume_reading();
  }
  // The last waiter again, when its wait is over and nothing else holds it (the common case:
  // a task reading in a loop): a future per read otherwise, allocated and destroyed.
  if (last_waiter_ && last_waiter_.state().use_count() == 1 &&
      last_waiter_.state()->reset_to_pending()) {
    waiter_ = last_waiter_;
  } else {
    waiter_ = loop_.create_future<void>();
    last_waiter_ = *waiter_;
  }
  return DataWait(*this, *waiter_, keep_alive);
}

Coroutine<std::string> StreamReader::readuntil(std::string separator) {
  std::shared_ptr<StreamReader> keep_alive;  // set by a wait (see wait_for_data)
  const std::size_t seplen = separator.size();
  if (seplen == 0) throw std::invalid_argument("Separator should be at least one-byte string");
  if (exception_) std::rethrow_exception(exception_);
  std::size_t offset = 0;
  std::size_t isep = std::string::npos;
  for (;;) {
    std::size_t buflen = buffer_.size();
    if (buflen >= offset + seplen) {  // Python's buflen - offset >= seplen, never negative
      isep = buffer_.find(separator, offset);
      if (isep != std::string::npos) break;
      offset = buflen + 1 - seplen;
      if (offset > limit_)
        throw LimitOverrunError("Separator is not found, and chunk exceed the limit", offset);
    }
    if (eof_) {
      std::string chunk = std::move(buffer_);
      buffer_.clear();
      throw IncompleteReadError(std::move(chunk), std::nullopt);  // asyncio: expected=None
    }
    co_await wait_for_data("readuntil", keep_alive);
  }
  if (isep > limit_)
    throw LimitOverrunError("Separator is found, but chunk is longer than limit", isep);
  std::string chunk = buffer_.substr(0, isep + seplen);
  buffer_.erase(0, isep + seplen);
  maybe_resume_transport();
  co_return chunk;
}

Coroutine<std::string> StreamReader::readline() {
  std::string line;
  std::optional<std::size_t> overrun;
  std::string overrun_msg;
  bool incomplete = false;
  try {
    line = co_await readuntil("\n");
  } catch (IncompleteReadError& e) {
    line = std::move(e.partial);  // at EOF: what is left
    incomplete = true;
  } catch (const LimitOverrunError& e) {
    overrun = e.consumed;
    overrun_msg = e.what();
  }
  if (overrun) {
    // Drop the over-long line (asyncio), then report it as ValueError.
    if (buffer_.compare(*overrun, 1, "\n") == 0)
      buffer_.erase(0, *overrun + 1);
    else
      buffer_.clear();
    maybe_resume_transport();
    throw std::invalid_argument(overrun_msg);
  }
  (void)incomplete;
  co_return line;
}

Coroutine<std::string> StreamReader::read(long n) {
  std::shared_ptr<StreamReader> keep_alive;  // set by a wait (see wait_for_data)
  if (exception_) std::rethrow_exception(exception_);
  if (n == 0) co_return std::string();
  if (n < 0) {
    std::string all;
    for (;;) {
      std::string block = co_await read(static_cast<long>(limit_));
      if (block.empty()) break;
      all += block;
    }
    co_return all;
  }
  if (buffer_.empty() && !eof_) co_await wait_for_data("read", keep_alive);
  std::string data;
  if (buffer_.size() <= static_cast<std::size_t>(n)) {
    data = std::move(buffer_);  // the common case: all of it, without a copy
    buffer_.clear();
  } else {
    data.assign(buffer_, 0, static_cast<std::size_t>(n));
    buffer_.erase(0, static_cast<std::size_t>(n));
  }
  maybe_resume_transport();
  co_return data;
}

Coroutine<std::string> StreamReader::readexactly(std::size_t n) {
  std::shared_ptr<StreamReader> keep_alive;  // set by a wait (see wait_for_data)
  if (exception_) std::rethrow_exception(exception_);
  if (n == 0) co_return std::string();
  while (buffer_.size() < n) {
    if (eof_) {
      std::string incomplete = std::move(buffer_);
      buffer_.clear();
      throw IncompleteReadError(std::move(incomplete), n);
    }
    co_await wait_for_data("readexactly", keep_alive);
  }
  std::string data = buffer_.substr(0, n);
  buffer_.erase(0, n);
  maybe_resume_transport();
  co_return data;
}

// ---- StreamReaderProtocol ------------------------------------------------------------------

StreamReaderProtocol::StreamReaderProtocol(EventLoop& loop, std::shared_ptr<StreamReader> reader,
                                           ClientConnected client_connected_cb)
    : loop_(loop),
      reader_(std::move(reader)),
      client_connected_cb_(std::move(client_connected_cb)),
      closed_(loop.create_future<void>()) {}

namespace {
// Keeps the user's callable alive as long as the coroutine it returned runs.
Coroutine<void> run_client_connected(std::shared_ptr<StreamReaderProtocol::ClientConnected> cb,
                                     std::shared_ptr<StreamReader> r,
                                     std::shared_ptr<StreamWriter> w) {
  co_await (*cb)(std::move(r), std::move(w));
}
}  // namespace

void StreamReaderProtocol::connection_made(BaseTransport& transport) {
  // Any read transport pauses when the buffer is full: a socket's, a TLS one's, a read pipe's.
  reader_->set_transport(dynamic_cast<ReadTransport*>(&transport));
  over_ssl_ = transport.get_extra_info("sslcontext").has_value();
  if (client_connected_cb_) {
    auto* t = dynamic_cast<Transport*>(&transport);
    if (!t) throw std::invalid_argument("a stream's writer needs a read-write transport");
    // The writer shares ownership of the transport: a TLS transport, for one, is freed by its
    // SSLProtocol after connection_lost while the handler may still close its writer. A
    // transport that cannot share itself (one of the user's) is held by an alias.
    auto tp = std::dynamic_pointer_cast<Transport>(t->shared_transport());
    if (!tp) tp = std::shared_ptr<Transport>(std::shared_ptr<Transport>(), t);
    writer_ = std::make_shared<StreamWriter>(tp, shared_from_this(), reader_, loop_);
    auto cb = std::make_shared<ClientConnected>(client_connected_cb_);
    loop_.create_task(run_client_connected(std::move(cb), reader_, writer_));
  }
}

void StreamReaderProtocol::connection_lost(std::exception_ptr exc) {
  if (reader_) {
    if (exc)
      reader_->set_exception(exc);
    else
      reader_->feed_eof();
    reader_->set_transport(nullptr);
  }
  if (!closed_.done()) {
    if (exc)
      closed_.set_exception(exc);
    else
      closed_.set_result();
    if (exc) (void)closed_.exception();  // nobody may wait_closed(): do not report it
  }
  // FlowControlMixin.connection_lost: wake the drains.
  connection_lost_ = true;
  if (paused_) {
    for (auto& w : drain_waiters_) {
      if (w.done()) continue;
      if (exc)
        w.set_exception(exc);
      else
        w.set_result();
    }
  }
  writer_.reset();
}

void StreamReaderProtocol::data_received(std::string_view data) {
  if (reader_) reader_->feed_data(data);
}

bool StreamReaderProtocol::eof_received() {
  if (reader_) reader_->feed_eof();
  // Keep the transport half-open: the writer may still write. Not over TLS, as asyncio:
  // the peer's close_notify closes the connection there.
  return !over_ssl_;
}

void StreamReaderProtocol::resume_writing() {
  paused_ = false;
  for (auto& w : drain_waiters_)
    if (!w.done()) w.set_result();
}

Coroutine<void> StreamReaderProtocol::drain_helper() {
  if (connection_lost_)
    throw std::system_error(ECONNRESET, std::generic_category(), "Connection lost");
  if (!paused_) co_return;
  Future<void> waiter = loop_.create_future<void>();
  drain_waiters_.push_back(waiter);
  std::exception_ptr error;
  try {
    co_await waiter;
  } catch (...) {
    error = std::current_exception();
  }
  for (auto it = drain_waiters_.begin(); it != drain_waiters_.end(); ++it)
    if (*it == waiter) {
      drain_waiters_.erase(it);
      break;
    }
  if (error) std::rethrow_exception(error);
}

// ---- StreamWriter --------------------------------------------------------------------------

StreamWriter::StreamWriter(std::shared_ptr<Transport> transport,
                           std::shared_ptr<StreamReaderProtocol> protocol,
                           std::shared_ptr<StreamReader> reader, EventLoop& loop)
    : transport_(std::move(transport)),
      protocol_(protocol),
      closed_(protocol->closed()),
      reader_(std::move(reader)),
      loop_(loop) {}

Coroutine<void> StreamWriter::wait_closed() {
  Future<void> closed = closed_;
  co_await closed;
}

StreamWriter::Drain StreamWriter::drain() {
  return Drain(*this);
}

// drain_coroutine()'s checks as a yes/no question, for the frameless fast path: it must not
// raise or yield, so it answers "not ready" wherever the coroutine would. Keep the two alike.
bool StreamWriter::drain_ready() const {
  if (reader_ && reader_->exception()) return false;
  if (transport_->is_closing()) return false;
  auto protocol = protocol_.lock();
  return protocol && protocol->drain_is_noop();
}

Coroutine<void> StreamWriter::drain_coroutine() {
  // A Task made of drain() may outlive the user's last reference to the writer.
  auto keep_alive = weak_from_this().lock();
  if (reader_) {
    if (auto exc = reader_->exception()) std::rethrow_exception(exc);
  }
  // Let connection_lost run first if the transport is closing (asyncio yields once).
  if (transport_->is_closing()) co_await sleep(0);
  auto protocol = protocol_.lock();  // gone: the connection was lost and released it
  if (!protocol) throw std::system_error(ECONNRESET, std::generic_category(), "Connection lost");
  if (protocol->drain_is_noop()) co_return;
  co_await protocol->drain_helper();
}

// ---- open_connection / start_server ----------------------------------------------------------

namespace {
StreamPair make_pair(EventLoop& lp, std::shared_ptr<Transport> t,
                     std::shared_ptr<StreamReaderProtocol> proto,
                     std::shared_ptr<StreamReader> reader) {
  auto writer = std::make_shared<StreamWriter>(std::move(t), std::move(proto), reader, lp);
  return {std::move(reader), std::move(writer)};
}
}  // namespace

Coroutine<StreamPair> open_connection(std::string host, int port, ConnectionOptions options,
                                      std::size_t limit) {
  EventLoop& lp = get_running_loop();
  auto reader = std::make_shared<StreamReader>(lp, limit);
  auto protocol = std::make_shared<StreamReaderProtocol>(lp, reader);
  // Named, not a temporary inside co_await (GCC 12 destroys such temporaries twice).
  auto factory = [protocol] { return protocol; };
  auto [t, p] = co_await lp.create_connection(factory, host, port, options);
  co_return make_pair(lp, t, p, reader);
}

Coroutine<StreamPair> open_unix_connection(std::string path, ConnectionOptions options,
                                           std::size_t limit) {
  EventLoop& lp = get_running_loop();
  auto reader = std::make_shared<StreamReader>(lp, limit);
  auto protocol = std::make_shared<StreamReaderProtocol>(lp, reader);
  auto factory = [protocol] { return protocol; };
  auto [t, p] = co_await lp.create_unix_connection(factory, path, options);
  co_return make_pair(lp, t, p, reader);
}

Coroutine<std::shared_ptr<Server>> start_server(ClientConnectedCallback client_connected_cb,
                                                std::string host, int port, ServerOptions options,
                                                std::size_t limit) {
  EventLoop& lp = get_running_loop();
  auto factory = [&lp, cb = std::move(client_connected_cb), limit] {
    auto reader = std::make_shared<StreamReader>(lp, limit);
    return std::make_shared<StreamReaderProtocol>(lp, reader, cb);
  };
  co_return co_await lp.create_server(factory, host, port, options);
}

Coroutine<std::shared_ptr<Server>> start_unix_server(ClientConnectedCallback client_connected_cb,
                                                     std::string path, ServerOptions options,
                                                     std::size_t limit) {
  EventLoop& lp = get_running_loop();
  auto factory = [&lp, cb = std::move(client_connected_cb), limit] {
    auto reader = std::make_shared<StreamReader>(lp, limit);
    return std::make_shared<StreamReaderProtocol>(lp, reader, cb);
  };
  co_return co_await lp.create_unix_server(factory, path, options);
}

}  // namespace loop

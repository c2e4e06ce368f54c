// Streams: asyncio's StreamReader / StreamWriter on top of a stream transport, and
// open_connection / start_server (and their unix variants) that make them.
#pragma once

#include <concepts>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "loop/connection_options.hpp"
#include "loop/coroutine.hpp"
#include "loop/protocols.hpp"
#include "loop/server.hpp"
#include "loop/transports.hpp"

namespace loop {

/// asyncio's _DEFAULT_LIMIT: the reader's buffer limit (64 KiB).
inline constexpr std::size_t kStreamDefaultLimit = 64 * 1024;

/// The reading end of a stream (asyncio.StreamReader). Reading pauses the transport when
/// more than 2 * limit bytes are buffered, and resumes it as they are consumed.
class StreamReader : public std::enable_shared_from_this<StreamReader> {
 public:
  explicit StreamReader(EventLoop& loop, std::size_t limit = kStreamDefaultLimit);
  StreamReader(const StreamReader&) = delete;
  StreamReader& operator=(const StreamReader&) = delete;

  /// Up to n bytes; n < 0: everything until EOF. Empty at EOF.
  Coroutine<std::string> read(long n = -1);
  /// One line with its '\n'; at EOF, what is left (maybe empty). std::invalid_argument when
  /// the line exceeds the limit (the data is dropped, as asyncio).
  Coroutine<std::string> readline();
  /// Exactly n bytes, or IncompleteReadError (with what was read) at EOF.
  Coroutine<std::string> readexactly(std::size_t n);
  /// Up to and including `separator`; IncompleteReadError at EOF without it;
  /// LimitOverrunError when the limit is exceeded (the data stays buffered).
  Coroutine<std::string> readuntil(std::string separator = "\n");
  /// EOF was fed and the buffer is empty.
  bool at_eof() const { return eof_ && buffer_.empty(); }
  std::exception_ptr exception() const { return exception_; }

  // ---- Fed by the protocol (asyncio's feed_data / feed_eof / set_exception) ----
  void feed_data(std::string_view data);
  void feed_eof();
  void set_exception(std::exception_ptr exc);
  /// Reading is paused on `transport` (a socket's or a child's pipe) when the buffer is full.
  void set_transport(ReadTransport* transport) { transport_ = transport; }
  std::size_t limit() const { return limit_; }
  /// Keeps `storage`'s memory for the next data fed, when nothing is buffered: a string read
  /// and then written with StreamWriter::write(std::move(s)) comes back here, so a stream
  /// that echoes allocates nothing per message. At most `limit` bytes of it, so that an idle
  /// stream holds no more than one full read.
  void reuse_storage(std::string&& storage) noexcept;

 private:
  class DataWait;
  /// asyncio's _wait_for_data: an awaitable rather than a coroutine (no frame per wait).
  /// When it suspends it sets `keep_alive` (a local of the reading coroutine) to this reader,
  /// if shared: a reader the user dropped while a read waits lives until that read is done,
  /// as a Python coroutine keeps its reader (the protocol lets go of it at connection_lost).
  DataWait wait_for_data(const char* func_name, std::shared_ptr<StreamReader>& keep_alive);
  void wakeup_waiter();
  void maybe_resume_transport();

  EventLoop& loop_;
  std::size_t limit_;
  std::string buffer_;
  bool eof_ = false;
  std::optional<Future<void>> waiter_;
  Future<void> last_waiter_;  // reused by the next wait once nobody else holds it
  std::exception_ptr exception_;
  ReadTransport* transport_ = nullptr;  // valid until connection_lost
  bool paused_ = false;
};

class StreamWriter;

/// The protocol between a transport and a StreamReader (asyncio.StreamReaderProtocol, with
/// FlowControlMixin's drain support). Made by open_connection / start_server.
class StreamReaderProtocol : public Protocol,
                             public std::enable_shared_from_this<StreamReaderProtocol> {
 public:
  using ClientConnected =
      std::function<Coroutine<void>(std::shared_ptr<StreamReader>, std::shared_ptr<StreamWriter>)>;
  StreamReaderProtocol(EventLoop& loop, std::shared_ptr<StreamReader> reader,
                       ClientConnected client_connected_cb = {});

  void connection_made(BaseTransport& transport) override;
  void connection_lost(std::exception_ptr exc) override;
  void data_received(std::string_view data) override;
  bool eof_received() override;
  void pause_writing() override { paused_ = true; }
  void resume_writing() override;

  /// Waits while the transport is paused for writing (FlowControlMixin._drain_helper).
  Coroutine<void> drain_helper();
  /// drain_helper would return at once: not paused, connection not lost (saves its frame).
  bool drain_is_noop() const { return !paused_ && !connection_lost_; }
  /// Done at connection_lost (with its error, if any).
  Future<void> closed() const { return closed_; }

 private:
  EventLoop& loop_;
  std::shared_ptr<StreamReader> reader_;
  ClientConnected client_connected_cb_;
  std::shared_ptr<StreamWriter> writer_;  // server side: the one given to the callback
  bool paused_ = false;
  bool connection_lost_ = false;
  bool over_ssl_ = false;  // asyncio's _over_ssl: the transport has an "sslcontext"
  std::deque<Future<void>> drain_waiters_;
  Future<void> closed_;
};

/// The writing end of a stream (asyncio.StreamWriter).
class StreamWriter : public std::enable_shared_from_this<StreamWriter> {
 public:
  StreamWriter(std::shared_ptr<Transport> transport, std::shared_ptr<StreamReaderProtocol> protocol,
               std::shared_ptr<StreamReader> reader, EventLoop& loop);

  void write(std::string_view data) { transport_->write(data); }
  /// The same, for a string the caller is done with (`write(std::move(data))`): once the
  /// transport has taken it (sent, or copied into its buffer), its memory goes to this
  /// stream's reader for the next data. Lvalues and string literals take the overload above.
  template <class S>
  requires std::same_as<S, std::string>
  void write(S&& data) {
    transport_->write(data);
    if (reader_) reader_->reuse_storage(std::move(data));
  }
  void writelines(const std::vector<std::string_view>& data) { transport_->writelines(data); }
  void write_eof() { transport_->write_eof(); }
  bool can_write_eof() const { return transport_->can_write_eof(); }
  void close() { transport_->close(); }
  bool is_closing() const { return transport_->is_closing(); }
  /// Returns once the connection is lost; rethrows its error.
  Coroutine<void> wait_closed();
  class Drain;
  /// `co_await writer.drain()`: waits until the transport takes more data (resume_writing);
  /// rethrows a reader error; std::system_error(ECONNRESET) once the connection is lost.
  /// An awaitable rather than a Coroutine: when there is nothing to wait for (writing is not
  /// paused, the usual case) the await completes with no coroutine frame at all. It converts
  /// to a Coroutine<void> where one is needed (a Task).
  Drain drain();
  std::any get_extra_info(std::string_view name, std::any default_value = {}) const {
    return transport_->get_extra_info(name, std::move(default_value));
  }
  const std::shared_ptr<Transport>& transport() const { return transport_; }
  EventLoop& get_loop() const { return loop_; }

 private:
  /// True when drain() has nothing to raise and nothing to wait for.
  bool drain_ready() const;
  /// asyncio's drain(), whole.
  Coroutine<void> drain_coroutine();

  std::shared_ptr<Transport> transport_;
  // Weak: the transport owns the protocol until connection_lost, and the protocol (server
  // side) holds this writer until then; a strong reference back would be a cycle that
  // outlives a loop destroyed with the connection open.
  std::weak_ptr<StreamReaderProtocol> protocol_;
  Future<void> closed_;
  std::shared_ptr<StreamReader> reader_;
  EventLoop& loop_;
};

// The checks run when the drain is awaited, not when drain() is called, as in asyncio.
class StreamWriter::Drain {
 public:
  explicit Drain(StreamWriter& writer) : writer_(&writer) {}
  bool await_ready() const { return writer_->drain_ready(); }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) {
    coroutine_.emplace(writer_->drain_coroutine());
    awaiter_.emplace(std::move(*coroutine_).operator co_await());
    return awaiter_->await_suspend(parent);
  }
  void await_resume() {
    if (awaiter_) awaiter_->await_resume();
  }
  operator Coroutine<void>() && { return writer_->drain_coroutine(); }

 private:
  StreamWriter* writer_;
  std::optional<Coroutine<void>> coroutine_;
  std::optional<Coroutine<void>::Awaiter> awaiter_;
};

using StreamPair = std::pair<std::shared_ptr<StreamReader>, std::shared_ptr<StreamWriter>>;
using ClientConnectedCallback = StreamReaderProtocol::ClientConnected;

/// asyncio.open_connection on the running loop.
Coroutine<StreamPair> open_connection(std::string host, int port, ConnectionOptions options = {},
                                      std::size_t limit = kStreamDefaultLimit);
/// asyncio.start_server: client_connected_cb(reader, writer) runs as a Task per connection.
Coroutine<std::shared_ptr<Server>> start_server(ClientConnectedCallback client_connected_cb,
                                                std::string host, int port,
                                                ServerOptions options = {},
                                                std::size_t limit = kStreamDefaultLimit);
/// asyncio.open_unix_connection ('@name': abstract).
Coroutine<StreamPair> open_unix_connection(std::string path, ConnectionOptions options = {},
                                           std::size_t limit = kStreamDefaultLimit);
/// asyncio.start_unix_server.
Coroutine<std::shared_ptr<Server>> start_unix_server(ClientConnectedCallback client_connected_cb,
                                                     std::string path, ServerOptions options = {},
                                                     std::size_t limit = kStreamDefaultLimit);

}  // namespace loop

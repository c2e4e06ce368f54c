// The TLS layer that sits between any stream transport and any protocol (asyncio 3.7's
// sslproto.py): SSLPipe is the engine over two memory BIOs, SSLProtocol is a Protocol for the
// transport below and presents an SSLProtocolTransport to the application protocol above.
// It knows nothing of sockets, which is what makes start_tls on a live connection possible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loop/event_loop.hpp"
#include "loop/future.hpp"
#include "loop/handle.hpp"
#include "loop/protocol_slot.hpp"
#include "loop/protocols.hpp"
#include "loop/ssl.hpp"
#include "loop/transports.hpp"

typedef struct bio_st BIO;

namespace loop {

/// asyncio's _SSLPipe: TLS over memory BIOs. Feed it the bytes read from the wire
/// (feed_ssldata) and the application's bytes (feed_appdata); send what they return.
class SSLPipe {
 public:
  enum class State { unwrapped, do_handshake, wrapped, shutdown };
  /// The most decrypted data read in one call (asyncio's max_size).
  static constexpr std::size_t max_size = 256 * 1024;

  /// `server_hostname` (client side): sent as SNI and matched against the certificate when
  /// the context checks hostnames; "" disables both; nullopt is refused when the context
  /// checks hostnames (std::invalid_argument, as Python's wrap_bio).
  SSLPipe(std::shared_ptr<SSLContext> context, bool server_side,
          std::optional<std::string> server_hostname = std::nullopt);
  ~SSLPipe();
  SSLPipe(const SSLPipe&) = delete;
  SSLPipe& operator=(const SSLPipe&) = delete;

  const std::shared_ptr<SSLContext>& context() const { return context_; }
  bool server_side() const { return server_side_; }
  const std::optional<std::string>& server_hostname() const { return server_hostname_; }
  State state() const { return state_; }
  /// Whether more record-level data is needed to complete a handshake, read or shutdown.
  bool need_ssldata() const { return need_ssldata_; }
  /// The SSL* (null before do_handshake; kept after shutdown for get_extra_info).
  SSL* ssl_object() const { return ssl_; }
  /// Records OpenSSL queued but nobody returned yet (an alert written as a handshake
  /// failed): send them before closing, so the peer learns why.
  std::vector<std::string> take_outgoing();
  /// Whether a security layer is in place (handshake started, shutdown not finished).
  bool wrapped() const { return state_ == State::wrapped; }

  using HandshakeCallback = std::function<void(std::exception_ptr)>;
  /// Starts the handshake; returns the records to send. `callback` runs (with the error or
  /// null) when it completes or fails. std::runtime_error if already started.
  std::vector<std::string> do_handshake(HandshakeCallback callback = {});
  /// Starts the closing handshake (close_notify); returns the records to send; `callback`
  /// runs once the peer's close_notify arrived. When it arrives later, the feed_ssldata
  /// that reads it returns it as usual (an empty appdata string, last). std::runtime_error
  /// when unwrapped or already shutting down.
  std::vector<std::string> shutdown(std::function<void()> callback = {});
  /// Half-closes: sends close_notify and goes on decrypting what the peer sends until its own
  /// (OpenSSL's SSL_shutdown closes the write direction only). Returns the records to send;
  /// nothing once the layer is not wrapped.
  std::vector<std::string> write_eof();
  /// The transport reached EOF.
  void feed_eof();

  struct Output {
    std::vector<std::string> ssldata;  // records to send to the peer
    std::vector<std::string> appdata;  // decrypted data; an empty string means close_notify
  };
  /// Feeds bytes from the wire. Throws SSLError (SSLCertVerificationError when the peer's
  /// certificate fails) on a fatal TLS error; the handshake callback gets it first.
  Output feed_ssldata(std::string_view data, bool only_handshake = false);
  /// Encrypts data[offset:]; returns the records and the new offset, which stays short of
  /// data.size() when a renegotiation or shutdown needs data from the peer first.
  std::pair<std::vector<std::string>, std::size_t> feed_appdata(std::string_view data,
                                                                std::size_t offset = 0);

 private:
  void drain_outgoing(std::vector<std::string>& out);
  std::exception_ptr make_error(const char* what);

  std::shared_ptr<SSLContext> context_;
  bool server_side_;
  std::optional<std::string> server_hostname_;
  State state_ = State::unwrapped;
  SSL* ssl_ = nullptr;
  BIO* incoming_ = nullptr;  // owned by ssl_ once attached
  BIO* outgoing_ = nullptr;
  bool need_ssldata_ = false;
  HandshakeCallback handshake_cb_;
  std::function<void()> shutdown_cb_;
};

class SSLProtocol;

/// The transport the application protocol sees (asyncio's _SSLProtocolTransport).
class SSLProtocolTransport : public Transport,
                             public std::enable_shared_from_this<SSLProtocolTransport> {
 public:
  explicit SSLProtocolTransport(std::weak_ptr<SSLProtocol> protocol) : ssl_protocol_(protocol) {}
  std::shared_ptr<BaseTransport> shared_transport() override { return shared_from_this(); }

  /// "ssl_object" (SSL*), "peercert" (nlohmann::json; null when the peer sent no certificate,
  /// whatever the default, as Python's None), "peercert_der" (std::string),
  /// "cipher" (CipherInfo), "compression" (std::optional<std::string>), "version"
  /// (std::string), "alpn_protocol" (std::string), "sslcontext"
  /// (std::shared_ptr<SSLContext>), then, until connection_lost, whatever the transport below
  /// knows (peername...); after it, the default.
  std::any get_extra_info(std::string_view name, std::any default_value = {}) const override;
  bool is_closing() const override { return closed_; }
  /// Sends close_notify after the pending data, then closes the transport below.
  void close() override;
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
  std::shared_ptr<BaseProtocol> get_protocol() const override;

  bool is_reading() const override;
  void pause_reading() override;
  void resume_reading() override;

  void write(std::string_view data) override;
  /// Sends close_notify after the pending data and goes on reading: a TLS half-close, which
  /// asyncio does not offer (NotImplementedError) but TLS 1.3 defines and OpenSSL supports
  /// in 1.2 as well. A peer that answers with its own close_notify ends the connection.
  void write_eof() override;
  bool can_write_eof() const override { return true; }
  void abort() override;
  /// The transport below's buffer plus the data not yet encrypted.
  std::size_t get_write_buffer_size() const override;
  void set_write_buffer_limits(std::optional<std::size_t> high = std::nullopt,
                               std::optional<std::size_t> low = std::nullopt) override;
  std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override;

 private:
  friend class SSLProtocol;
  std::shared_ptr<SSLProtocol> protocol_or_throw() const;
  std::weak_ptr<SSLProtocol> ssl_protocol_;
  // After connection_lost the application's transport owns the layer, so that its extra info
  // (the TLS session's and the peer's address) outlives the connection, as in asyncio.
  std::shared_ptr<SSLProtocol> keep_;
  bool closed_ = false;
};

struct SSLProtocolOptions {
  bool server_side = false;
  /// See SSLPipe; for a client, create_connection passes the host when not given.
  std::optional<std::string> server_hostname;
  /// Call the application's connection_made once the handshake is done (false for
  /// start_tls, whose protocol is already connected).
  bool call_connection_made = true;
  /// Seconds the handshake may take before the connection is aborted (nullopt: 60).
  std::optional<double> ssl_handshake_timeout;
  /// The id used for "transport" in the tls_handshake_* trace records (the creator passes
  /// the id of the transport below; nullopt: a fresh id).
  std::optional<std::uint64_t> trace_id;
};

/// asyncio's SSLProtocol. Create it with make(), give it to the transport below as its
/// protocol; connection_made starts the handshake; `waiter` (optional) gets a result when
/// the handshake is done or the error when it fails or the connection is lost first.
class SSLProtocol : public Protocol, public std::enable_shared_from_this<SSLProtocol> {
 public:
  static constexpr double default_handshake_timeout = 60.0;

  /// A null `context` on a client side means SSLContext::create_default_context(); a server
  /// needs one (std::invalid_argument). A non-positive timeout: std::invalid_argument.
  static std::shared_ptr<SSLProtocol> make(EventLoop& loop, std::shared_ptr<Protocol> app_protocol,
                                           std::shared_ptr<SSLContext> context,
                                           Future<void> waiter = {},
                                           SSLProtocolOptions options = {});
  ~SSLProtocol() override;

  /// The transport to give the application (valid as long as this object lives; after
  /// connection_lost, as long as somebody holds it).
  std::shared_ptr<SSLProtocolTransport> app_transport() const {
    return app_transport_ ? app_transport_ : app_transport_after_lost_.lock();
  }
  const std::shared_ptr<SSLContext>& context() const { return context_; }
  std::shared_ptr<Protocol> app_protocol() const { return app_protocol_.shared(); }
  void set_app_protocol(std::shared_ptr<Protocol> protocol);
  /// The SSLPipe (null before connection_made and after the layer is finished).
  SSLPipe* sslpipe() const { return sslpipe_.get(); }
  bool handshake_done() const { return session_established_; }

  // ---- Protocol, for the transport below ---------------------------------------------------
  void connection_made(BaseTransport& transport) override;
  void connection_lost(std::exception_ptr exc) override;
  void pause_writing() override;
  void resume_writing() override;
  /// TLS records from the wire. Bytes fed before connection_made (e.g. what the old
  /// protocol had read ahead when start_tls upgrades a connection) are kept and fed first.
  void data_received(std::string_view data) override;
  bool eof_received() override;

 private:
  friend class SSLProtocolTransport;
  SSLProtocol(EventLoop& loop, std::shared_ptr<Protocol> app_protocol,
              std::shared_ptr<SSLContext> context, Future<void> waiter, SSLProtocolOptions options);

  void wakeup_waiter(std::exception_ptr exc = nullptr);
  std::any get_extra_info(std::string_view name, std::any default_value) const;
  void start_shutdown();
  void start_write_eof();
  void close_notify_received();
  void write_appdata(std::string_view data);
  void start_handshake();
  void check_handshake_timeout();
  void on_handshake_complete(std::exception_ptr exc);
  void process_write_backlog();
  void feed_app(const std::string& chunk);
  void fatal_error(std::exception_ptr exc, const std::string& message = "Fatal error on transport");
  void finalize();
  void do_abort();
  void trace_handshake_end(const std::exception_ptr& exc);

  EventLoop& loop_;
  detail::ProtocolSlot<Protocol> app_protocol_;
  BufferedProtocol* app_buffered_ = nullptr;  // app_protocol_ when it is a BufferedProtocol
  std::shared_ptr<SSLContext> context_;
  Future<void> waiter_;
  SSLProtocolOptions options_;
  double handshake_timeout_;
  std::uint64_t trace_id_;
  std::shared_ptr<SSLProtocolTransport> app_transport_;
  std::weak_ptr<SSLProtocolTransport> app_transport_after_lost_;  // it owns us then
  std::unique_ptr<SSLPipe> sslpipe_;
  Transport* transport_ = nullptr;  // the transport below, from connection_made to _lost
  // The transport below (when it is shared): keeps start_tls's path to the socket alive. Not
  // asked for extra info after connection_lost: asyncio gives the default then.
  std::shared_ptr<BaseTransport> below_;
  // Data waiting to be encrypted: (data, offset). ("", 1) is the handshake, ("", 0) the
  // shutdown, as in asyncio; ("", 2) our half-close (write_eof).
  std::deque<std::pair<std::string, std::size_t>> write_backlog_;
  std::size_t write_buffer_size_ = 0;
  std::string pending_incoming_;  // fed before connection_made
  bool session_established_ = false;
  bool in_handshake_ = false;
  bool in_shutdown_ = false;
  bool eof_written_ = false;    // write_eof: our close_notify is queued or sent
  bool eof_heard_ = false;      // the peer's close_notify came and the application kept writing
  bool app_heard_eof_ = false;  // its eof_received ran (once, for close_notify or TCP EOF)
  bool lost_ = false;
  bool pipe_done_ = false;        // shut down or failed: the pipe takes no more data
  bool handshake_ok_ = false;     // the TLS extra info is available
  std::exception_ptr fatal_exc_;  // reported to connection_lost in place of the null below
  std::optional<TimerHandle> handshake_timeout_handle_;
  // Extra info that becomes available with the handshake.
  nlohmann::json peercert_;
  std::optional<CipherInfo> cipher_;
  std::optional<std::string> compression_;
};

}  // namespace loop

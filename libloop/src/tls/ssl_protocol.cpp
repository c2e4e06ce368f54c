// loop::SSLProtocol: asyncio 3.7's SSLProtocol (sslproto.py), the TLS layer between a
// transport and an application protocol.
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "loop/sslproto.hpp"

namespace loop {

namespace {

std::uint64_t next_tls_trace_id() {
  static std::atomic<std::uint64_t> next{1};
  return next++;
}

// Python prints 60.0 and 0.2; so do we.
std::string format_seconds(double s) {
  char buf[64];
  if (s == std::floor(s) && std::fabs(s) < 1e15)
    std::snprintf(buf, sizeof buf, "%.1f", s);
  else
    std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

// OSError-like errors (SSL errors are OSErrors in Python) are not reported to the exception
// handler: they are the peer's doing and reach the waiter and connection_lost.
bool is_os_error(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const SSLError&) {
    return true;
  } catch (const std::system_error&) {
    return true;
  } catch (...) {
    return false;
  }
}

bool is_cert_error(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const SSLCertVerificationError&) {
    return true;
  } catch (...) {
    return false;
  }
}

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown error";
  }
}

std::exception_ptr connection_reset(const char* what) {
  return std::make_exception_ptr(std::system_error(ECONNRESET, std::generic_category(), what));
}

}  // namespace

std::shared_ptr<SSLProtocol> SSLProtocol::make(EventLoop& loop,
                                               std::shared_ptr<Protocol> app_protocol,
                                               std::shared_ptr<SSLContext> context,
                                               Future<void> waiter, SSLProtocolOptions options) {
  if (options.server_side && !context)
    throw std::invalid_argument("Server side SSL needs a valid SSLContext");
  if (options.ssl_handshake_timeout && !(*options.ssl_handshake_timeout > 0))
    throw std::invalid_argument("ssl_handshake_timeout should be a positive number, got " +
                                format_seconds(*options.ssl_handshake_timeout));
  if (!context) context = SSLContext::create_default_context();
  if (options.server_side) options.server_hostname.reset();
  if (!options.server_side && !options.server_hostname && context->check_hostname())
    throw std::invalid_argument("check_hostname requires server_hostname");
  std::shared_ptr<SSLProtocol> p(new SSLProtocol(loop, std::move(app_protocol), std::move(context),
                                                 std::move(waiter), std::move(options)));
  p->app_transport_ = std::make_shared<SSLProtocolTransport>(p);
  return p;
}

SSLProtocol::SSLProtocol(EventLoop& loop, std::shared_ptr<Protocol> app_protocol,
                         std::shared_ptr<SSLContext> context, Future<void> waiter,
                         SSLProtocolOptions options)
    : loop_(loop),
      context_(std::move(context)),
      waiter_(std::move(waiter)),
      options_(std::move(options)),
      handshake_timeout_(options_.ssl_handshake_timeout.value_or(default_handshake_timeout)),
      trace_id_(options_.trace_id.value_or(0)) {
  set_app_protocol(std::move(app_protocol));
}

SSLProtocol::~SSLProtocol() {
  if (handshake_timeout_handle_) handshake_timeout_handle_->cancel();
}

void SSLProtocol::set_app_protocol(std::shared_ptr<Protocol> protocol) {
  app_buffered_ = dynamic_cast<BufferedProtocol*>(protocol.get());  // before the old one may go
  app_protocol_.set(std::move(protocol));
}

void SSLProtocol::wakeup_waiter(std::exception_ptr exc) {
  if (!waiter_) return;
  if (!waiter_.done()) {
    if (exc)
      waiter_.set_exception(exc);
    else
      waiter_.set_result();
  }
  waiter_ = Future<void>();
}

// ---- The transport below ------------------------------------------------------------------

void SSLProtocol::connection_made(BaseTransport& transport) {
  transport_ = dynamic_cast<Transport*>(&transport);
  below_ = transport.shared_transport();
  if (!transport_) throw std::invalid_argument("SSLProtocol needs a stream Transport");
  if (!options_.trace_id) {
    auto id = transport.extra<std::uint64_t>("transport_id");
    trace_id_ = id ? *id : next_tls_trace_id();
  }
  sslpipe_ = std::make_unique<SSLPipe>(context_, options_.server_side, options_.server_hostname);
  start_handshake();
  // Bytes that arrived before the layer was in place are the first TLS records.
  if (!pending_incoming_.empty()) {
    std::string pending = std::exchange(pending_incoming_, {});
    data_received(pending);
  }
}

void SSLProtocol::connection_lost(std::exception_ptr exc) {
  if (lost_) return;
  lost_ = true;
  if (!exc) exc = fatal_exc_;
  if (in_handshake_) {
    in_handshake_ = false;
    if (!exc) exc = connection_reset("Connection lost during the SSL handshake");
    trace_handshake_end(exc);
  }
  if (session_established_) {
    session_established_ = false;
    // The application's transport lives at least until its connection_lost has run.
    if (auto app = app_protocol_.shared())
      loop_.call_soon([app, exc, t = app_transport_] { app->connection_lost(exc); });
  }
  app_transport_->closed_ = true;
  app_transport_->keep_ = shared_from_this();
  app_transport_after_lost_ = app_transport_;
  auto app_transport = std::move(app_transport_);  // released when this function returns
  transport_ = nullptr;
  pipe_done_ = true;
  if (handshake_timeout_handle_) handshake_timeout_handle_->cancel();
  wakeup_waiter(exc ? exc : connection_reset("Connection lost during the SSL handshake"));
  app_buffered_ = nullptr;
  app_protocol_.reset();
}

void SSLProtocol::pause_writing() {
  app_protocol_.call_if_set([](Protocol& app) { app.pause_writing(); });
}

void SSLProtocol::resume_writing() {
  app_protocol_.call_if_set([](Protocol& app) { app.resume_writing(); });
}

void SSLProtocol::data_received(std::string_view data) {
  if (!sslpipe_) {
    if (!lost_) pending_incoming_.append(data);
    return;
  }
  if (pipe_done_ || !transport_) return;
  SSLPipe::Output out;
  try {
    out = sslpipe_->feed_ssldata(data);
  } catch (...) {
    // A failed handshake was reported by on_handshake_complete already.
    if (!fatal_exc_) fatal_error(std::current_exception(), "SSL error in data received");
    return;
  }
  for (auto& chunk : out.ssldata)
    if (transport_) transport_->write(chunk);
  for (auto& chunk : out.appdata) {
    if (chunk.empty()) {  // the peer's close_notify
      close_notify_received();
      break;
    }
    if (!app_protocol_) break;
    try {
      feed_app(chunk);
    } catch (...) {
      fatal_error(std::current_exception(), "application protocol failed to receive SSL data");
      return;
    }
  }
}

void SSLProtocol::feed_app(const std::string& chunk) {
  // Whatever the protocol replaced meanwhile (set_protocol), it lives until the chunk is fed.
  detail::ProtocolSlot<Protocol>::Call scope(app_protocol_);
  auto* buffered = app_buffered_;
  if (!buffered) {
    app_protocol_.get()->data_received(chunk);
    return;
  }
  // asyncio's _feed_data_to_buffered_proto(proto, data): the whole chunk goes to the
  // protocol it started with, even if it set_protocol()s meanwhile (3.7).
  std::string_view rest = chunk;
  while (!rest.empty()) {
    std::span<char> buf = buffered->get_buffer(rest.size());
    if (buf.empty()) throw std::runtime_error("get_buffer() returned an empty buffer");
    std::size_t n = std::min(buf.size(), rest.size());
    std::memcpy(buf.data(), rest.data(), n);
    buffered->buffer_updated(n);
    rest.remove_prefix(n);
  }
}

void SSLProtocol::close_notify_received() {
  // The application hears of it (asyncio 3.11 calls eof_received here; 3.7 did not), also
  // when it is the answer to our own close() (3.11's _do_shutdown). Its true keeps the
  // connection half-open for its writes, a TLS half-close; asyncio ignores it. Otherwise, or
  // when our own close_notify went out already, the connection closes after what is still
  // to be written.
  bool keep_open = false;
  if (session_established_ && !app_heard_eof_) {
    app_heard_eof_ = true;
    app_protocol_.call_if_set([&keep_open](Protocol& app) { keep_open = app.eof_received(); });
  }
  if (keep_open && !in_shutdown_ && !eof_written_) {
    eof_heard_ = true;
    return;
  }
  start_shutdown();
}

bool SSLProtocol::eof_received() {
  // The TCP EOF that follows a close_notify the application chose to outlive: our writes
  // go on (the peer may still be reading); the application heard of the EOF already.
  if (eof_heard_ && !in_shutdown_) return true;
  // EOF without close_notify: during the handshake it is a reset; afterwards the
  // application hears of it (its return value cannot keep a TLS connection half-open).
  if (in_handshake_ && !fatal_exc_)
    fatal_exc_ = connection_reset("Connection lost during the SSL handshake");
  wakeup_waiter(fatal_exc_ ? fatal_exc_ : connection_reset("EOF received"));
  struct CloseBelow {
    SSLProtocol* self;
    ~CloseBelow() {
      if (self->transport_) self->transport_->close();
    }
  } close_below{this};
  if (!in_handshake_ && session_established_ && !app_heard_eof_) {
    app_heard_eof_ = true;
    app_protocol_.call_if_set([](Protocol& app) { app.eof_received(); });
  }
  return false;
}

std::any SSLProtocol::get_extra_info(std::string_view name, std::any default_value) const {
  if (name == "sslcontext") return context_;
  // The session's details stay after the connection is lost (the SSL object is kept).
  if (handshake_ok_) {
    SSL* ssl = sslpipe_ ? sslpipe_->ssl_object() : nullptr;
    if (ssl) {
      if (name == "ssl_object") return ssl;
      if (name == "peercert") return peercert_;
      if (name == "peercert_der") return ssl_peercert_der(ssl);
      if (name == "cipher") return cipher_ ? std::any(*cipher_) : default_value;
      if (name == "compression") return compression_;
      if (name == "version") {
        auto v = ssl_version(ssl);
        return v ? std::any(*v) : default_value;
      }
      if (name == "alpn_protocol") {
        auto a = ssl_selected_alpn_protocol(ssl);
        return a ? std::any(*a) : default_value;
      }
    }
  }
  // After connection_lost, the default (asyncio's _get_extra_info with _transport None).
  if (transport_) return transport_->get_extra_info(name, std::move(default_value));
  return default_value;
}

// ---- Shutdown, writes, the handshake --------------------------------------------------------

void SSLProtocol::start_shutdown() {
  if (in_shutdown_) return;
  if (in_handshake_) {
    do_abort();
  } else {
    in_shutdown_ = true;
    write_appdata({});
  }
}

void SSLProtocol::start_write_eof() {
  if (eof_written_ || in_shutdown_) return;
  eof_written_ = true;
  if (eof_heard_) {
    start_shutdown();  // both sides said EOF: the closing handshake is complete with ours
    return;
  }
  write_backlog_.emplace_back(std::string(), 2);  // after what was written before it
  process_write_backlog();
}

void SSLProtocol::write_appdata(std::string_view data) {
  write_backlog_.emplace_back(std::string(data), 0);
  write_buffer_size_ += data.size();
  process_write_backlog();
}

void SSLProtocol::start_handshake() {
  in_handshake_ = true;
  if (loop_.tracer()) loop_.trace_flat("tls_handshake_start", {{"transport", trace_id_}});
  // ("", 1) is the handshake's place in the backlog, as in asyncio; first, ahead of what the
  // application wrote before connection_made, which must not pass through unencrypted.
  write_backlog_.emplace_front(std::string(), 1);
  std::weak_ptr<SSLProtocol> weak = weak_from_this();
  handshake_timeout_handle_ = loop_.call_later(handshake_timeout_, [weak] {
    if (auto self = weak.lock()) self->check_handshake_timeout();
  });
  process_write_backlog();
}

void SSLProtocol::check_handshake_timeout() {
  if (!in_handshake_) return;
  std::string msg = "SSL handshake is taking longer than " + format_seconds(handshake_timeout_) +
                    " seconds: aborting the connection";
  auto exc = std::make_exception_ptr(
      std::system_error(ECONNABORTED, std::generic_category(), msg));  // ConnectionAbortedError
  in_handshake_ = false;
  trace_handshake_end(exc);
  fatal_error(exc);
}

void SSLProtocol::trace_handshake_end(const std::exception_ptr& exc) {
  if (!loop_.tracer()) return;
  nlohmann::json reason = nullptr;
  if (exc) reason = what_of(exc);
  loop_.trace("tls_handshake_end", {{"transport", trace_id_}, {"ok", !exc}, {"reason", reason}});
}

void SSLProtocol::on_handshake_complete(std::exception_ptr exc) {
  in_handshake_ = false;
  if (handshake_timeout_handle_) handshake_timeout_handle_->cancel();
  trace_handshake_end(exc);
  if (exc) {
    fatal_error(exc, is_cert_error(exc) ? "SSL handshake failed on verifying the certificate"
                                        : "SSL handshake failed");
    return;
  }
  // Extra info that becomes available with the handshake.
  SSL* ssl = sslpipe_->ssl_object();
  handshake_ok_ = true;
  peercert_ = ssl_peercert(ssl);
  cipher_ = ssl_cipher(ssl);
  compression_ = ssl_compression(ssl);
  if (options_.call_connection_made)
    app_protocol_.call_if_set([this](Protocol& app) { app.connection_made(*app_transport_); });
  wakeup_waiter();
  session_established_ = true;
  // Writes made meanwhile: not now (we may be inside process_write_backlog, which is not
  // reentrant) but in the next iteration, as asyncio does.
  std::weak_ptr<SSLProtocol> weak = weak_from_this();
  loop_.call_soon([weak] {
    if (auto self = weak.lock()) self->process_write_backlog();
  });
}

void SSLProtocol::process_write_backlog() {
  if (!transport_ || !sslpipe_ || pipe_done_) return;
  try {
    for (std::size_t i = 0, n = write_backlog_.size(); i < n && transport_ && !pipe_done_; ++i) {
      auto& [data, offset] = write_backlog_.front();
      // Our close_notify waits for the handshake (on_handshake_complete runs the backlog).
      if (data.empty() && offset == 2 && sslpipe_->state() == SSLPipe::State::do_handshake) break;
      std::vector<std::string> ssldata;
      std::size_t new_offset = 1;
      if (!data.empty()) {
        std::tie(ssldata, new_offset) = sslpipe_->feed_appdata(data, offset);
      } else if (offset == 2) {
        ssldata = sslpipe_->write_eof();
      } else if (offset) {
        ssldata = sslpipe_->do_handshake(
            [this](std::exception_ptr e) { on_handshake_complete(std::move(e)); });
      } else {
        ssldata = sslpipe_->shutdown([this] { finalize(); });
      }
      for (auto& chunk : ssldata)
        if (transport_) transport_->write(chunk);
      if (new_offset < data.size()) {
        offset = new_offset;
        // A short write waits for the peer: make sure we read what it sends.
        if (transport_ && !transport_->is_reading()) transport_->resume_reading();
        break;
      }
      write_buffer_size_ -= data.size();
      write_backlog_.pop_front();
    }
  } catch (...) {
    if (in_handshake_)
      on_handshake_complete(std::current_exception());
    else
      fatal_error(std::current_exception(), "Fatal error on SSL transport");
  }
}

void SSLProtocol::fatal_error(std::exception_ptr exc, const std::string& message) {
  if (!is_os_error(exc)) {
    ExceptionContext ctx;
    ctx.message = message;
    ctx.exception = exc;
    ctx.transport = transport_;
    ctx.protocol = this;
    loop_.call_exception_handler(ctx);
  }
  if (!fatal_exc_) fatal_exc_ = exc;
  wakeup_waiter(exc);
  if (!transport_) return;
  // The alert OpenSSL wrote (bad certificate, unknown CA...) tells the peer why.
  if (sslpipe_)
    for (auto& chunk : sslpipe_->take_outgoing()) transport_->write(chunk);
  pipe_done_ = true;
  transport_->abort();  // asyncio's _force_close(exc): connection_lost reports fatal_exc_
}

void SSLProtocol::finalize() {
  pipe_done_ = true;  // the pipe itself stays: we may be inside one of its methods
  // Our caller still has to write the last records (our close_notify answer): close after.
  std::weak_ptr<SSLProtocol> weak = weak_from_this();
  loop_.call_soon([weak] {
    if (auto self = weak.lock())
      if (self->transport_) self->transport_->close();
  });
}

void SSLProtocol::do_abort() {
  if (transport_) transport_->abort();
  finalize();
}

}  // namespace loop

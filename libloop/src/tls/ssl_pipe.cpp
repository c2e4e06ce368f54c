// loop::SSLPipe: asyncio's _SSLPipe, on an SSL* between two memory BIOs.
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <climits>
#include <stdexcept>

#include "loop/sslproto.hpp"

namespace loop {

namespace {

bool is_ip_address(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

bool wants_io(int err) {
  return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
}

}  // namespace

SSLPipe::SSLPipe(std::shared_ptr<SSLContext> context, bool server_side,
                 std::optional<std::string> server_hostname)
    : context_(std::move(context)), server_side_(server_side) {
  if (!context_) throw std::invalid_argument("SSLPipe needs an SSLContext");
  if (server_side_) return;  // a server has no hostname to check
  server_hostname_ = std::move(server_hostname);
  if (!server_hostname_ && context_->check_hostname())
    throw std::invalid_argument("check_hostname requires server_hostname");
}

SSLPipe::~SSLPipe() {
  if (ssl_) SSL_free(ssl_);  // frees both BIOs with it
}

std::exception_ptr SSLPipe::make_error(const char* what) {
  unsigned long code = ERR_peek_error();
  long verify = ssl_ ? SSL_get_verify_result(ssl_) : X509_V_OK;
  if (code && ERR_GET_LIB(code) == ERR_LIB_SSL &&
      ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK) {
    // Python's wording: "certificate verify failed: unable to get local issuer certificate".
    std::string host = server_hostname_.value_or("");
    std::string reason;
    if (verify == X509_V_ERR_HOSTNAME_MISMATCH)
      reason = "Hostname mismatch, certificate is not valid for '" + host + "'.";
    else if (verify == X509_V_ERR_IP_ADDRESS_MISMATCH)
      reason = "IP address mismatch, certificate is not valid for '" + host + "'.";
    else
      reason = X509_verify_cert_error_string(verify);
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    ERR_clear_error();
    return std::make_exception_ptr(SSLCertVerificationError(
        "certificate verify failed: " + reason + " (" + buf + ")", verify, reason, code));
  }
  SSLError e = detail::ssl_error_from_queue(what);
  if (!code) e = SSLError(std::string(what) + ": unexpected EOF or I/O error", "unexpected eof");
  return std::make_exception_ptr(std::move(e));
}

void SSLPipe::drain_outgoing(std::vector<std::string>& out) {
  if (!outgoing_) return;
  std::size_t pending = BIO_ctrl_pending(outgoing_);
  if (pending == 0) return;
  std::string chunk(pending, '\0');
  int n = BIO_read(outgoing_, chunk.data(), static_cast<int>(pending));
  chunk.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  out.push_back(std::move(chunk));
}

std::vector<std::string> SSLPipe::take_outgoing() {
  std::vector<std::string> out;
  drain_outgoing(out);
  return out;
}

std::vector<std::string> SSLPipe::do_handshake(HandshakeCallback callback) {
  if (state_ != State::unwrapped) throw std::runtime_error("handshake in progress or completed");
  ERR_clear_error();
  ssl_ = SSL_new(context_->native_handle());
  if (!ssl_) std::rethrow_exception(make_error("SSL_new failed"));
  incoming_ = BIO_new(BIO_s_mem());
  outgoing_ = BIO_new(BIO_s_mem());
  // An empty BIO means "no data yet" (retry), not end of stream.
  BIO_set_mem_eof_return(incoming_, -1);
  BIO_set_mem_eof_return(outgoing_, -1);
  SSL_set_bio(ssl_, incoming_, outgoing_);
  if (server_side_) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    if (server_hostname_ && !server_hostname_->empty()) {
      const std::string& host = *server_hostname_;
      bool ip = is_ip_address(host);
      if (!ip) SSL_set_tlsext_host_name(ssl_, host.c_str());  // RFC 6066: no SNI for IPs
      if (context_->check_hostname()) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                    : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
        if (ok != 1) throw std::invalid_argument("invalid server_hostname '" + host + "'");
      }
    }
  }
  state_ = State::do_handshake;
  handshake_cb_ = std::move(callback);
  return feed_ssldata({}, true).ssldata;
}

std::vector<std::string> SSLPipe::shutdown(std::function<void()> callback) {
  if (state_ == State::unwrapped) throw std::runtime_error("no security layer present");
  if (state_ == State::shutdown) throw std::runtime_error("shutdown in progress");
  state_ = State::shutdown;
  shutdown_cb_ = std::move(callback);
  return feed_ssldata({}).ssldata;
}

std::vector<std::string> SSLPipe::write_eof() {
  std::vector<std::string> out;
  if (state_ != State::wrapped) return out;
  if (!(SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN)) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // 0: sent, the peer's not yet here; the wrapped state goes on reading
  }
  drain_outgoing(out);
  return out;
}

void SSLPipe::feed_eof() {
  if (incoming_) BIO_set_mem_eof_return(incoming_, 0);
  feed_ssldata({});
}

SSLPipe::Output SSLPipe::feed_ssldata(std::string_view data, bool only_handshake) {
  Output out;
  if (state_ == State::unwrapped) {
    // No security layer: plaintext passes straight through.
    if (!data.empty()) out.appdata.emplace_back(data);
    return out;
  }
  need_ssldata_ = false;
  while (!data.empty()) {
    int chunk = static_cast<int>(std::min<std::size_t>(data.size(), INT_MAX));
    BIO_write(incoming_, data.data(), chunk);  // a memory BIO takes everything
    data.remove_prefix(static_cast<std::size_t>(chunk));
  }

  if (state_ == State::do_handshake) {
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl_);
    if (rc != 1) {
      int err = SSL_get_error(ssl_, rc);
      if (!wants_io(err)) {
        auto exc = make_error("SSL handshake failed");
        if (handshake_cb_) handshake_cb_(exc);
        std::rethrow_exception(exc);
      }
      need_ssldata_ = err == SSL_ERROR_WANT_READ;
      drain_outgoing(out.ssldata);
      return out;
    }
    state_ = State::wrapped;
    if (handshake_cb_) handshake_cb_(nullptr);
    if (only_handshake) {
      drain_outgoing(out.ssldata);
      return out;
    }
  }

  if (state_ == State::wrapped) {
    // Read until the BIO is empty or close_notify; one string per max_size.
    std::string buf;
    for (;;) {
      std::size_t old = buf.size();
      buf.resize(old + 16384);
      ERR_clear_error();
      int n = SSL_read(ssl_, buf.data() + old, 16384);
      if (n > 0) {
        buf.resize(old + static_cast<std::size_t>(n));
        if (buf.size() >= max_size) {
          out.appdata.push_back(std::move(buf));
          buf = std::string();
        }
        continue;
      }
      buf.resize(old);
      int err = SSL_get_error(ssl_, n);
      if (!buf.empty()) {
        out.appdata.push_back(std::move(buf));
        buf = std::string();
      }
      if (err == SSL_ERROR_ZERO_RETURN) {
        out.appdata.emplace_back();  // close_notify
        break;
      }
      if (wants_io(err) || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
        need_ssldata_ = err == SSL_ERROR_WANT_READ;
        break;
      }
      std::rethrow_exception(make_error("SSL read failed"));
    }
  } else if (state_ == State::shutdown) {
    // Send our close_notify once, then wait for the peer's; records before it are dropped.
    // Whether the peer's close_notify is read now, rather than before shutdown() (our answer)
    // or never (a handshake cut short): only then does the caller hear of it.
    bool heard_before =
        !SSL_is_init_finished(ssl_) || (SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN);
    if (!SSL_is_init_finished(ssl_)) {
      SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);  // nothing to close
    } else if (!(SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN)) {
      ERR_clear_error();
      SSL_shutdown(ssl_);
    }
    char sink[16384];
    while (!(SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN)) {
      ERR_clear_error();
      int n = SSL_read(ssl_, sink, sizeof sink);
      if (n > 0) continue;
      int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_ZERO_RETURN) break;
      if (wants_io(err) || err == SSL_ERROR_SYSCALL) {
        need_ssldata_ = err == SSL_ERROR_WANT_READ;
        break;
      }
      std::rethrow_exception(make_error("SSL shutdown failed"));
    }
    if (SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN) {
      state_ = State::unwrapped;
      need_ssldata_ = false;
      drain_outgoing(out.ssldata);
      // Plaintext the peer sent after its close_notify (a STARTTLS downgrade) passes on.
      std::size_t rest = BIO_ctrl_pending(incoming_);
      if (rest) {
        std::string plain(rest, '\0');
        BIO_read(incoming_, plain.data(), static_cast<int>(rest));
        out.appdata.push_back(std::move(plain));
      }
      // close_notify, last: the application's EOF ends its data.
      if (!heard_before) out.appdata.emplace_back();
      if (shutdown_cb_) shutdown_cb_();
      return out;
    }
  }

  // Records to send back: handshake messages, alerts, key updates, close_notify.
  drain_outgoing(out.ssldata);
  return out;
}

std::pair<std::vector<std::string>, std::size_t> SSLPipe::feed_appdata(std::string_view data,
                                                                       std::size_t offset) {
  std::vector<std::string> ssldata;
  if (state_ == State::unwrapped) {
    if (offset < data.size()) ssldata.emplace_back(data.substr(offset));
    return {std::move(ssldata), data.size()};
  }
  if (state_ == State::do_handshake) {
    // Application data waits for the handshake (a short write, as OpenSSL would return).
    need_ssldata_ = true;
    return {std::move(ssldata), offset};
  }
  for (;;) {
    need_ssldata_ = false;
    if (offset < data.size()) {
      int len = static_cast<int>(std::min<std::size_t>(data.size() - offset, INT_MAX));
      ERR_clear_error();
      int n = SSL_write(ssl_, data.data() + offset, len);
      if (n > 0) {
        offset += static_cast<std::size_t>(n);
      } else {
        int err = SSL_get_error(ssl_, n);
        // Writing after our close_notify is not allowed until the peer's arrives: report it
        // as a short write, as asyncio does for PROTOCOL_IS_SHUTDOWN.
        bool is_shutdown = err == SSL_ERROR_ZERO_RETURN || (SSL_get_shutdown(ssl_) != 0);
        if (!wants_io(err) && !is_shutdown && err != SSL_ERROR_SYSCALL)
          std::rethrow_exception(make_error("SSL write failed"));
        need_ssldata_ = true;  // stop here; the backlog resumes when the peer speaks
      }
    }
    drain_outgoing(ssldata);
    if (offset == data.size() || need_ssldata_) break;
  }
  return {std::move(ssldata), offset};
}

}  // namespace loop

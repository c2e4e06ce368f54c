// TLS configuration and errors (Python's ssl module, the parts asyncio uses), on OpenSSL.
//
// An SSLContext wraps an SSL_CTX and is shared by every connection made with it
// (std::shared_ptr): configure it first, then hand it to create_connection, create_server or
// start_tls.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

// OpenSSL's own typedefs (openssl/types.h), repeated so that users need not include OpenSSL.
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace loop {

/// A TLS error (ssl.SSLError). what() is the full message; reason() is OpenSSL's reason for
/// the first error in its queue (e.g. "certificate verify failed", "wrong version number").
class SSLError : public std::runtime_error {
 public:
  SSLError(const std::string& message, std::string reason = {}, std::string library = {},
           unsigned long code = 0)
      : std::runtime_error(message),
        reason_(std::move(reason)),
        library_(std::move(library)),
        code_(code) {}
  const std::string& reason() const { return reason_; }
  const std::string& library() const { return library_; }
  /// OpenSSL's packed error code (ERR_get_error), 0 when the error did not come from OpenSSL.
  unsigned long code() const { return code_; }

 private:
  std::string reason_;
  std::string library_;
  unsigned long code_;
};

/// The peer's certificate did not verify (ssl.SSLCertVerificationError): verify_code is
/// OpenSSL's X509_V_ERR_* value, verify_message its text or the hostname mismatch.
class SSLCertVerificationError : public SSLError {
 public:
  SSLCertVerificationError(const std::string& message, long verify_code, std::string verify_message,
                           unsigned long code = 0)
      : SSLError(message, "certificate verify failed", "SSL", code),
        verify_code(verify_code),
        verify_message(std::move(verify_message)) {}
  long verify_code;
  std::string verify_message;
};

/// ssl.Purpose: what the peer's certificate is used for. SERVER_AUTH makes a client context
/// (it authenticates servers); CLIENT_AUTH makes a server context.
enum class Purpose { server_auth, client_auth };

/// ssl.PROTOCOL_TLS_CLIENT / PROTOCOL_TLS_SERVER / PROTOCOL_TLS.
enum class SSLContextSide { client, server, any };

/// ssl.CERT_NONE / CERT_OPTIONAL / CERT_REQUIRED.
enum class VerifyMode { cert_none, cert_optional, cert_required };

/// ssl.TLSVersion.
enum class TLSVersion { minimum_supported, tlsv1, tlsv1_1, tlsv1_2, tlsv1_3, maximum_supported };

/// The negotiated cipher (ssl.SSLSocket.cipher(): name, protocol version, secret bits).
struct CipherInfo {
  std::string name;
  std::string protocol;
  int bits = 0;
};

class SSLContext : public std::enable_shared_from_this<SSLContext> {
 public:
  /// ssl.SSLContext(protocol). A client context verifies the peer and checks its hostname;
  /// a server one does not ask for client certificates. Both refuse TLS below 1.2 (set
  /// minimum_version to allow older peers).
  explicit SSLContext(SSLContextSide side = SSLContextSide::any);
  ~SSLContext();
  SSLContext(const SSLContext&) = delete;
  SSLContext& operator=(const SSLContext&) = delete;

  /// ssl.create_default_context: a client context (server_auth) trusting the system's CA
  /// store, or cafile/capath/cadata when given; or a server context (client_auth).
  static std::shared_ptr<SSLContext> create_default_context(Purpose purpose = Purpose::server_auth,
                                                            const std::string& cafile = {},
                                                            const std::string& capath = {},
                                                            const std::string& cadata = {});

  /// Loads this side's certificate chain (PEM) and private key (keyfile empty: in certfile).
  /// Throws SSLError naming the file, with OpenSSL's reason, if it is missing or malformed,
  /// or if the key does not match the certificate.
  void load_cert_chain(const std::string& certfile, const std::string& keyfile = {},
                       const std::optional<std::string>& password = std::nullopt);
  /// Trusts the CA certificates in cafile (PEM), capath (a hashed directory) and/or cadata
  /// (PEM text). Throws SSLError naming the file on error.
  void load_verify_locations(const std::string& cafile = {}, const std::string& capath = {},
                             const std::string& cadata = {});
  /// Trusts the system's CA store (SSL_CTX_set_default_verify_paths).
  void load_default_certs();
  /// OpenSSL cipher list string for TLS <= 1.2; throws SSLError("No cipher can be selected.").
  void set_ciphers(const std::string& ciphers);
  /// ALPN protocols offered (client) or accepted (server), in order of preference.
  void set_alpn_protocols(const std::vector<std::string>& protocols);

  /// Enabling hostname checking also turns CERT_NONE into CERT_REQUIRED (as Python does).
  void set_check_hostname(bool enabled);
  bool check_hostname() const { return check_hostname_; }
  /// Throws std::invalid_argument for CERT_NONE while check_hostname is on. To turn
  /// verification off: set_check_hostname(false), then set_verify_mode(cert_none).
  void set_verify_mode(VerifyMode mode);
  VerifyMode verify_mode() const { return verify_mode_; }
  void set_minimum_version(TLSVersion v);
  TLSVersion minimum_version() const;
  void set_maximum_version(TLSVersion v);
  TLSVersion maximum_version() const;

  SSLContextSide side() const { return side_; }
  /// The wrapped SSL_CTX (still owned by this object).
  SSL_CTX* native_handle() const { return ctx_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSLContextSide side_;
  bool check_hostname_ = false;
  VerifyMode verify_mode_ = VerifyMode::cert_none;
  std::string alpn_wire_;  // the server side selects from this
};

// ---- Inspecting a connection (the SSL* behind get_extra_info("ssl_object")) ---------------
/// The peer's certificate as Python's SSLSocket.getpeercert() dict: subject, issuer (tuples
/// of RDNs of [name, value] pairs), version, serialNumber, notBefore, notAfter,
/// subjectAltName ([["DNS", "localhost"], ["IP Address", "127.0.0.1"]]). Null (Python's None)
/// when the peer sent no certificate; an empty object when it was not verified (Python's
/// rule), unless `unverified` asks for it decoded anyway.
nlohmann::json ssl_peercert(SSL* ssl, bool unverified = false);
/// The peer's certificate in DER form (empty when there is none).
std::string ssl_peercert_der(SSL* ssl);
std::optional<CipherInfo> ssl_cipher(SSL* ssl);
/// The compression method in use (nullopt: none, which is always the case with TLS 1.3).
std::optional<std::string> ssl_compression(SSL* ssl);
/// "TLSv1.3", "TLSv1.2", ... (nullopt before the handshake).
std::optional<std::string> ssl_version(SSL* ssl);
std::optional<std::string> ssl_selected_alpn_protocol(SSL* ssl);

namespace detail {
/// An SSLError from OpenSSL's error queue (then emptied): "<what>: <ERR_error_string>...".
SSLError ssl_error_from_queue(const std::string& what);
}  // namespace detail

}  // namespace loop

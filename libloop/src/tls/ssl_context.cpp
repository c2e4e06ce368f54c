// loop::SSLContext: an SSL_CTX with Python's defaults (ssl.SSLContext, create_default_context).
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <stdexcept>

#include "loop/ssl.hpp"

namespace loop {

namespace {

// Never let OpenSSL prompt on the terminal for a key's passphrase: the password (if any) is
// the callback's userdata, set only while load_cert_chain runs.
int password_callback(char* buf, int size, int /*rwflag*/, void* userdata) {
  if (!userdata) return 0;
  const auto* pw = static_cast<const std::string*>(userdata);
  if (pw->size() > static_cast<std::size_t>(size)) return -1;
  std::memcpy(buf, pw->data(), pw->size());
  return static_cast<int>(pw->size());
}

int to_openssl(TLSVersion v) {
  switch (v) {
    case TLSVersion::minimum_supported:
    case TLSVersion::maximum_supported:
      return 0;
    case TLSVersion::tlsv1:
      return TLS1_VERSION;
    case TLSVersion::tlsv1_1:
      return TLS1_1_VERSION;
    case TLSVersion::tlsv1_2:
      return TLS1_2_VERSION;
    case TLSVersion::tlsv1_3:
      return TLS1_3_VERSION;
  }
  return 0;
}

TLSVersion from_openssl(long v, TLSVersion zero) {
  switch (v) {
    case TLS1_VERSION:
      return TLSVersion::tlsv1;
    case TLS1_1_VERSION:
      return TLSVersion::tlsv1_1;
    case TLS1_2_VERSION:
      return TLSVersion::tlsv1_2;
    case TLS1_3_VERSION:
      return TLSVersion::tlsv1_3;
    default:
      return zero;
  }
}

int alpn_select(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
                const unsigned char* in, unsigned int inlen, void* arg) {
  const auto* wire = static_cast<const std::string*>(arg);
  unsigned char* selected = nullptr;
  if (wire->empty() ||
      SSL_select_next_proto(&selected, outlen, reinterpret_cast<const unsigned char*>(wire->data()),
                            static_cast<unsigned>(wire->size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

SSLContext::SSLContext(SSLContextSide side) : side_(side) {
  const SSL_METHOD* method = side == SSLContextSide::client   ? TLS_client_method()
                             : side == SSLContextSide::server ? TLS_server_method()
                                                              : TLS_method();
  ERR_clear_error();
  ctx_ = SSL_CTX_new(method);
  if (!ctx_) throw detail::ssl_error_from_queue("SSLContext: SSL_CTX_new failed");
  // Python's defaults: no compression (CRIME), server picks the cipher, TLS 1.2 at least.
  SSL_CTX_set_options(ctx_, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                SSL_OP_SINGLE_DH_USE | SSL_OP_SINGLE_ECDH_USE);
  SSL_CTX_set_mode(ctx_, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_default_passwd_cb(ctx_, password_callback);
  SSL_CTX_set_default_passwd_cb_userdata(ctx_, nullptr);
  if (side == SSLContextSide::client) {
    check_hostname_ = true;
    set_verify_mode(VerifyMode::cert_required);
  } else {
    set_verify_mode(VerifyMode::cert_none);
  }
}

SSLContext::~SSLContext() {
  SSL_CTX_free(ctx_);
}

std::shared_ptr<SSLContext> SSLContext::create_default_context(Purpose purpose,
                                                               const std::string& cafile,
                                                               const std::string& capath,
                                                               const std::string& cadata) {
  auto ctx = std::make_shared<SSLContext>(purpose == Purpose::server_auth ? SSLContextSide::client
                                                                          : SSLContextSide::server);
  if (!cafile.empty() || !capath.empty() || !cadata.empty()) {
    ctx->load_verify_locations(cafile, capath, cadata);
  } else if (ctx->verify_mode() != VerifyMode::cert_none) {
    ctx->load_default_certs();
  }
  return ctx;
}

void SSLContext::load_cert_chain(const std::string& certfile, const std::string& keyfile,
                                 const std::optional<std::string>& password) {
  const std::string& key = keyfile.empty() ? certfile : keyfile;
  ERR_clear_error();
  SSL_CTX_set_default_passwd_cb_userdata(ctx_,
                                         password ? const_cast<std::string*>(&*password) : nullptr);
  struct ResetUserdata {
    SSL_CTX* ctx;
    ~ResetUserdata() { SSL_CTX_set_default_passwd_cb_userdata(ctx, nullptr); }
  } reset{ctx_};
  if (SSL_CTX_use_certificate_chain_file(ctx_, certfile.c_str()) != 1)
    throw detail::ssl_error_from_queue("load_cert_chain: cannot load certificate file '" +
                                       certfile + "'");
  if (SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1)
    throw detail::ssl_error_from_queue("load_cert_chain: cannot load private key file '" + key +
                                       "'");
  if (SSL_CTX_check_private_key(ctx_) != 1)
    throw detail::ssl_error_from_queue("load_cert_chain: the private key in '" + key +
                                       "' does not match the certificate in '" + certfile + "'");
}

void SSLContext::load_verify_locations(const std::string& cafile, const std::string& capath,
                                       const std::string& cadata) {
  if (cafile.empty() && capath.empty() && cadata.empty())
    throw std::invalid_argument("cafile, capath and cadata cannot be all omitted");
  ERR_clear_error();
  if (!cafile.empty() || !capath.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_, cafile.empty() ? nullptr : cafile.c_str(),
                                      capath.empty() ? nullptr : capath.c_str()) != 1) {
      std::string what = !cafile.empty() ? "cafile '" + cafile + "'" : "capath '" + capath + "'";
      if (!cafile.empty() && !capath.empty()) what += " / capath '" + capath + "'";
      throw detail::ssl_error_from_queue("load_verify_locations: cannot load " + what);
    }
  }
  if (!cadata.empty()) {
    BIO* bio = BIO_new_mem_buf(cadata.data(), static_cast<int>(cadata.size()));
    X509_STORE* store = SSL_CTX_get_cert_store(ctx_);
    int loaded = 0;
    while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(store, cert);
      X509_free(cert);
      ++loaded;
    }
    BIO_free(bio);
    if (loaded == 0)
      throw detail::ssl_error_from_queue("load_verify_locations: no certificate in cadata");
    ERR_clear_error();  // the PEM reader's end-of-data "error"
  }
}

void SSLContext::load_default_certs() {
  ERR_clear_error();
  if (SSL_CTX_set_default_verify_paths(ctx_) != 1)
    throw detail::ssl_error_from_queue("load_default_certs: cannot load the system's CA store");
}

void SSLContext::set_ciphers(const std::string& ciphers) {
  ERR_clear_error();
  if (SSL_CTX_set_cipher_list(ctx_, ciphers.c_str()) != 1) {
    ERR_clear_error();
    throw SSLError("No cipher can be selected.", "no cipher match", "SSL");
  }
}

void SSLContext::set_alpn_protocols(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255)
      throw std::invalid_argument("ALPN protocol name must be 1 to 255 bytes: '" + p + "'");
    wire += static_cast<char>(p.size());
    wire += p;
  }
  alpn_wire_ = std::move(wire);
  if (side_ != SSLContextSide::server)
    SSL_CTX_set_alpn_protos(ctx_, reinterpret_cast<const unsigned char*>(alpn_wire_.data()),
                            static_cast<unsigned>(alpn_wire_.size()));
  if (side_ != SSLContextSide::client) SSL_CTX_set_alpn_select_cb(ctx_, alpn_select, &alpn_wire_);
}

void SSLContext::set_check_hostname(bool enabled) {
  if (enabled && verify_mode_ == VerifyMode::cert_none) set_verify_mode(VerifyMode::cert_required);
  check_hostname_ = enabled;
}

void SSLContext::set_verify_mode(VerifyMode mode) {
  if (mode == VerifyMode::cert_none && check_hostname_)
    throw std::invalid_argument(
        "Cannot set verify_mode to CERT_NONE when check_hostname is enabled.");
  int flags = SSL_VERIFY_NONE;
  if (mode == VerifyMode::cert_optional) flags = SSL_VERIFY_PEER;
  if (mode == VerifyMode::cert_required) flags = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(ctx_, flags, nullptr);
  verify_mode_ = mode;
}

void SSLContext::set_minimum_version(TLSVersion v) {
  if (SSL_CTX_set_min_proto_version(ctx_, to_openssl(v)) != 1)
    throw std::invalid_argument("unsupported minimum TLS version");
}

TLSVersion SSLContext::minimum_version() const {
  return from_openssl(SSL_CTX_get_min_proto_version(ctx_), TLSVersion::minimum_supported);
}

void SSLContext::set_maximum_version(TLSVersion v) {
  if (SSL_CTX_set_max_proto_version(ctx_, to_openssl(v)) != 1)
    throw std::invalid_argument("unsupported maximum TLS version");
}

TLSVersion SSLContext::maximum_version() const {
  return from_openssl(SSL_CTX_get_max_proto_version(ctx_), TLSVersion::maximum_supported);
}

}  // namespace loop

// What a finished handshake tells: the peer's certificate (as Python's getpeercert() dict),
// the cipher, the protocol version, ALPN, compression.
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "loop/ssl.hpp"

namespace loop {

namespace {

std::string asn1_string(const ASN1_STRING* s) {
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0) return {};
  std::string out(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

// ((("countryName", "US"),), (("commonName", "localhost"),)): one array per RDN, each of
// [name, value] pairs, names as OpenSSL's long names (as Python's _ssl does).
nlohmann::json name_to_json(const X509_NAME* name) {
  nlohmann::json rdns = nlohmann::json::array();
  int last_set = -1;
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
    char key[128];
    OBJ_obj2txt(key, sizeof key, X509_NAME_ENTRY_get_object(e), 0);
    int set = X509_NAME_ENTRY_set(e);
    if (set != last_set) rdns.push_back(nlohmann::json::array());
    last_set = set;
    rdns.back().push_back({key, asn1_string(X509_NAME_ENTRY_get_data(e))});
  }
  return rdns;
}

std::string asn1_time(const ASN1_TIME* t) {
  BIO* bio = BIO_new(BIO_s_mem());
  ASN1_TIME_print(bio, t);  // "Jan  5 09:34:43 2018 GMT", as Python shows it
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return out;
}

std::string ip_to_string(const ASN1_OCTET_STRING* ip) {
  const unsigned char* p = ASN1_STRING_get0_data(ip);
  int len = ASN1_STRING_length(ip);
  char buf[64];
  if (len == 4) {
    std::snprintf(buf, sizeof buf, "%d.%d.%d.%d", p[0], p[1], p[2], p[3]);
    return buf;
  }
  if (len == 16) {  // Python prints every group, upper case, no "::" compression
    std::string out;
    for (int i = 0; i < 16; i += 2) {
      std::snprintf(buf, sizeof buf, "%X", (p[i] << 8) | p[i + 1]);
      if (i) out += ':';
      out += buf;
    }
    return out;
  }
  return "<invalid>";
}

nlohmann::json subject_alt_names(X509* cert) {
  nlohmann::json out = nlohmann::json::array();
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    switch (gn->type) {
      case GEN_DNS:
        out.push_back({"DNS", asn1_string(gn->d.dNSName)});
        break;
      case GEN_IPADD:
        out.push_back({"IP Address", ip_to_string(gn->d.iPAddress)});
        break;
      case GEN_EMAIL:
        out.push_back({"email", asn1_string(gn->d.rfc822Name)});
        break;
      case GEN_URI:
        out.push_back({"URI", asn1_string(gn->d.uniformResourceIdentifier)});
        break;
      case GEN_DIRNAME:
        out.push_back({"DirName", name_to_json(gn->d.directoryName)});
        break;
      default:
        out.push_back({"othername", "<unsupported>"});
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

}  // namespace

nlohmann::json ssl_peercert(SSL* ssl, bool unverified) {
  if (!ssl) return nullptr;
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return nullptr;  // Python's None: the peer sent no certificate
  nlohmann::json out = nlohmann::json::object();
  // Python's rule: a certificate nobody verified is not shown decoded.
  bool verified =
      (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) && SSL_get_verify_result(ssl) == X509_V_OK;
  if (verified || unverified) {
    out["subject"] = name_to_json(X509_get_subject_name(cert));
    out["issuer"] = name_to_json(X509_get_issuer_name(cert));
    out["version"] = X509_get_version(cert) + 1;
    BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
    char* hex = BN_bn2hex(bn);
    out["serialNumber"] = hex;
    OPENSSL_free(hex);
    BN_free(bn);
    out["notBefore"] = asn1_time(X509_get0_notBefore(cert));
    out["notAfter"] = asn1_time(X509_get0_notAfter(cert));
    auto san = subject_alt_names(cert);
    if (!san.empty()) out["subjectAltName"] = std::move(san);
  }
  X509_free(cert);
  return out;
}

std::string ssl_peercert_der(SSL* ssl) {
  if (!ssl) return {};
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return {};
  unsigned char* der = nullptr;
  int n = i2d_X509(cert, &der);
  std::string out;
  if (n > 0) out.assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(n));
  OPENSSL_free(der);
  X509_free(cert);
  return out;
}

std::optional<CipherInfo> ssl_cipher(SSL* ssl) {
  const SSL_CIPHER* c = ssl ? SSL_get_current_cipher(ssl) : nullptr;
  if (!c) return std::nullopt;
  return CipherInfo{SSL_CIPHER_get_name(c), SSL_CIPHER_get_version(c),
                    SSL_CIPHER_get_bits(c, nullptr)};
}

std::optional<std::string> ssl_compression(SSL* ssl) {
  const COMP_METHOD* m = ssl ? SSL_get_current_compression(ssl) : nullptr;
  if (!m) return std::nullopt;
  return std::string(SSL_COMP_get_name(m));
}

std::optional<std::string> ssl_version(SSL* ssl) {
  if (!ssl || !SSL_is_init_finished(ssl)) return std::nullopt;
  return std::string(SSL_get_version(ssl));
}

std::optional<std::string> ssl_selected_alpn_protocol(SSL* ssl) {
  const unsigned char* data = nullptr;
  unsigned len = 0;
  if (ssl) SSL_get0_alpn_selected(ssl, &data, &len);
  if (!data || !len) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(data), len);
}

}  // namespace loop

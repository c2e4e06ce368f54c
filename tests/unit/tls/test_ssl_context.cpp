// loop::SSLContext: Python's defaults, loading files, and the errors for bad ones.
#include <openssl/ssl.h>

#include <catch2/catch.hpp>
#include <loop/ssl.hpp>

#include "test_certs.hpp"

using loop::SSLContext;
using loop::SSLError;
using loop::TLSVersion;
using loop::VerifyMode;
using loop::test::TestCerts;

namespace {
// The message of the SSLError fn throws (fails the test if it throws nothing else).
template <class F>
std::string ssl_error_of(F&& fn) {
  try {
    fn();
  } catch (const SSLError& e) {
    return e.what();
  }
  FAIL("no SSLError thrown");
  return {};
}
}  // namespace

TEST_CASE("a default client context verifies the peer and its hostname, TLS 1.2 at least") {
  auto ctx = SSLContext::create_default_context();
  CHECK(ctx->side() == loop::SSLContextSide::client);
  CHECK(ctx->check_hostname());
  CHECK(ctx->verify_mode() == VerifyMode::cert_required);
  CHECK(ctx->minimum_version() == TLSVersion::tlsv1_2);
  CHECK((SSL_CTX_get_verify_mode(ctx->native_handle()) & SSL_VERIFY_PEER) != 0);
  CHECK((SSL_CTX_get_options(ctx->native_handle()) & SSL_OP_NO_COMPRESSION) != 0);
}

TEST_CASE("a default server context does not ask for client certificates") {
  auto ctx = SSLContext::create_default_context(loop::Purpose::client_auth);
  CHECK(ctx->side() == loop::SSLContextSide::server);
  CHECK_FALSE(ctx->check_hostname());
  CHECK(ctx->verify_mode() == VerifyMode::cert_none);
  CHECK(ctx->minimum_version() == TLSVersion::tlsv1_2);
}

TEST_CASE("verification can be turned off explicitly, in Python's order") {
  auto ctx = SSLContext::create_default_context();
  // Python: "Cannot set verify_mode to CERT_NONE when check_hostname is enabled."
  CHECK_THROWS_AS(ctx->set_verify_mode(VerifyMode::cert_none), std::invalid_argument);
  ctx->set_check_hostname(false);
  ctx->set_verify_mode(VerifyMode::cert_none);
  CHECK(ctx->verify_mode() == VerifyMode::cert_none);
  CHECK(SSL_CTX_get_verify_mode(ctx->native_handle()) == SSL_VERIFY_NONE);
  // And turning hostname checking back on requires verification again.
  ctx->set_check_hostname(true);
  CHECK(ctx->verify_mode() == VerifyMode::cert_required);
}

TEST_CASE("minimum and maximum versions are settable") {
  SSLContext ctx(loop::SSLContextSide::server);
  ctx.set_minimum_version(TLSVersion::tlsv1_3);
  CHECK(ctx.minimum_version() == TLSVersion::tlsv1_3);
  ctx.set_minimum_version(TLSVersion::tlsv1);
  CHECK(ctx.minimum_version() == TLSVersion::tlsv1);
  ctx.set_maximum_version(TLSVersion::tlsv1_2);
  CHECK(ctx.maximum_version() == TLSVersion::tlsv1_2);
}

TEST_CASE("load_cert_chain loads a matching certificate and key") {
  const auto& certs = TestCerts::get();
  SSLContext ctx(loop::SSLContextSide::server);
  ctx.load_cert_chain(certs.server_cert, certs.server_key);
  CHECK(SSL_CTX_get0_certificate(ctx.native_handle()) != nullptr);
  // Certificate and key in one file.
  std::string both = certs.write_file(
      "both.pem", TestCerts::read_file(certs.server_cert) + TestCerts::read_file(certs.server_key));
  SSLContext ctx2(loop::SSLContextSide::server);
  ctx2.load_cert_chain(both);
}

TEST_CASE("a missing certificate file: the error names the file and OpenSSL's reason") {
  SSLContext ctx(loop::SSLContextSide::server);
  std::string msg = ssl_error_of([&] { ctx.load_cert_chain("/nonexistent/cert.pem"); });
  CHECK_THAT(msg, Catch::Contains("/nonexistent/cert.pem"));
  CHECK_THAT(msg, Catch::Contains("No such file or directory"));
}

TEST_CASE("a malformed certificate or key file: the error names the file") {
  const auto& certs = TestCerts::get();
  std::string garbage = certs.write_file("garbage.pem", "this is not PEM\n");
  SSLContext ctx(loop::SSLContextSide::server);
  std::string msg = ssl_error_of([&] { ctx.load_cert_chain(garbage, certs.server_key); });
  CHECK_THAT(msg, Catch::Contains(garbage));
  CHECK_THAT(msg, Catch::Contains("error:"));  // OpenSSL's ERR_error_string
  msg = ssl_error_of([&] { ctx.load_cert_chain(certs.server_cert, garbage); });
  CHECK_THAT(msg, Catch::Contains("private key file '" + garbage + "'"));
  try {
    ctx.load_cert_chain(garbage, certs.server_key);
  } catch (const SSLError& e) {
    CHECK_FALSE(e.reason().empty());
    CHECK(e.code() != 0);
  }
}

TEST_CASE("a key that does not match the certificate is refused") {
  const auto& certs = TestCerts::get();
  SSLContext ctx(loop::SSLContextSide::server);
  std::string msg = ssl_error_of([&] { ctx.load_cert_chain(certs.server_cert, certs.other_key); });
  CHECK_THAT(msg, Catch::Contains(certs.other_key));
  CHECK_THAT(msg, Catch::Contains("key values mismatch"));  // OpenSSL's reason
}

TEST_CASE("an encrypted key needs its password and never prompts") {
  const auto& certs = TestCerts::get();
  std::string enc = certs.dir + "/server_enc.key";
  REQUIRE(std::system(("openssl pkey -in " + certs.server_key +
                       " -aes128 -passout pass:s3cret -out " + enc + " >/dev/null 2>&1")
                          .c_str()) == 0);
  SSLContext ctx(loop::SSLContextSide::server);
  std::string msg = ssl_error_of([&] { ctx.load_cert_chain(certs.server_cert, enc); });
  CHECK_THAT(msg, Catch::Contains(enc));
  CHECK_THROWS_AS(ctx.load_cert_chain(certs.server_cert, enc, std::string("wrong")), SSLError);
  ctx.load_cert_chain(certs.server_cert, enc, std::string("s3cret"));
}

TEST_CASE("load_verify_locations: a CA file, PEM data, and errors naming the file") {
  const auto& certs = TestCerts::get();
  auto ctx = SSLContext::create_default_context(loop::Purpose::server_auth, certs.ca_cert);
  auto count = [&] {
    return sk_X509_OBJECT_num(
        X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx->native_handle())));
  };
  int before = count();
  CHECK(before >= 1);
  ctx->load_verify_locations({}, {}, TestCerts::read_file(certs.unknown_ca_cert));
  CHECK(count() == before + 1);
  std::string msg = ssl_error_of([&] { ctx->load_verify_locations("/nonexistent/ca.pem"); });
  CHECK_THAT(msg, Catch::Contains("/nonexistent/ca.pem"));
  std::string garbage = certs.write_file("garbage_ca.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
  msg = ssl_error_of([&] { ctx->load_verify_locations(garbage); });
  CHECK_THAT(msg, Catch::Contains(garbage));
  CHECK_THROWS_AS(ctx->load_verify_locations(), std::invalid_argument);
  CHECK_THROWS_AS(ctx->load_verify_locations({}, {}, "not pem"), SSLError);
}

TEST_CASE("set_ciphers refuses a list that selects nothing") {
  SSLContext ctx(loop::SSLContextSide::client);
  ctx.set_ciphers("ECDHE+AESGCM");
  CHECK_THROWS_WITH(ctx.set_ciphers("NO-SUCH-CIPHER"), "No cipher can be selected.");
}

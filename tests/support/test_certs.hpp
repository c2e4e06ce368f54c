// Certificates for TLS tests, made once per test process with the openssl CLI in a temporary
// directory (removed at exit):
//   ca_cert/ca_key            a throwaway CA ("libloop test CA")
//   server_cert/server_key    CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1, signed by ca
//   unknown_ca_cert           a second, self-signed CA nobody trusts
//   other_cert/other_key      CN=other.example (SAN DNS:other.example), signed by unknown_ca
//   self_signed_cert/_key     CN=localhost, self-signed
//   client_cert/client_key    CN=test client, signed by ca (for client authentication)
// Usage: const auto& certs = loop::test::TestCerts::get();
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace loop::test {

struct TestCerts {
  std::string dir;
  std::string ca_cert, ca_key;
  std::string server_cert, server_key;
  std::string unknown_ca_cert, unknown_ca_key;
  std::string other_cert, other_key;
  std::string self_signed_cert, self_signed_key;
  std::string client_cert, client_key;

  static const TestCerts& get() {
    static TestCerts certs(0);
    return certs;
  }

  /// Writes `content` to a file in the temp dir; returns its path.
  std::string write_file(const std::string& name, const std::string& content) const {
    std::string path = dir + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

  static std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  TestCerts(const TestCerts&) = delete;
  TestCerts& operator=(const TestCerts&) = delete;
  ~TestCerts() {
    if (!dir.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  }

 private:
  static void run(const std::string& cmd) {
    if (std::system((cmd + " >/dev/null 2>&1").c_str()) != 0)
      throw std::runtime_error("test certificates: command failed: " + cmd);
  }

  // A key and a certificate for `subject` signed by ca (self-signed when ca is empty).
  static void make_cert(const std::string& d, const std::string& name, const std::string& subject,
                        const std::string& ca, const std::string& extensions) {
    std::string ext = d + "/" + name + ".ext";
    std::ofstream(ext) << extensions;
    run("openssl ecparam -name prime256v1 -genkey -noout -out " + d + "/" + name + ".key");
    if (ca.empty()) {
      run("openssl req -x509 -new -key " + d + "/" + name + ".key -subj '" + subject +
          "' -days 30 -sha256 -extensions v3 -config " + ext + " -out " + d + "/" + name + ".pem");
    } else {
      run("openssl req -new -key " + d + "/" + name + ".key -subj '" + subject + "' -out " + d +
          "/" + name + ".csr");
      run("openssl x509 -req -in " + d + "/" + name + ".csr -CA " + d + "/" + ca + ".pem -CAkey " +
          d + "/" + ca + ".key -CAcreateserial -days 30 -sha256 -extfile " + ext +
          " -extensions v3 -out " + d + "/" + name + ".pem");
    }
  }

  explicit TestCerts(int) {
    TestCerts& c = *this;
    char tmpl[] = "/tmp/libloop-certs-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("test certificates: mkdtemp failed");
    c.dir = tmpl;
    const std::string& d = c.dir;
    const std::string req = "[req]\ndistinguished_name=dn\n[dn]\n";
    const std::string ca_ext = req +
                               "[v3]\nbasicConstraints=critical,CA:TRUE\n"
                               "keyUsage=critical,keyCertSign,cRLSign\n"
                               "subjectKeyIdentifier=hash\n";
    auto leaf_ext = [&](const std::string& san) {
      return req +
             "[v3]\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
             "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=" +
             san + "\n";
    };
    make_cert(d, "ca", "/O=libloop tests/CN=libloop test CA", "", ca_ext);
    make_cert(d, "server", "/O=libloop tests/CN=localhost", "ca",
              leaf_ext("DNS:localhost,IP:127.0.0.1,IP:::1"));
    make_cert(d, "unknown_ca", "/O=nobody/CN=unknown test CA", "", ca_ext);
    make_cert(d, "other", "/O=nobody/CN=other.example", "unknown_ca",
              leaf_ext("DNS:other.example"));
    make_cert(d, "self_signed", "/CN=localhost", "", leaf_ext("DNS:localhost"));
    make_cert(d, "client", "/O=libloop tests/CN=test client", "ca", leaf_ext("DNS:client"));
    c.ca_cert = d + "/ca.pem";
    c.ca_key = d + "/ca.key";
    c.server_cert = d + "/server.pem";
    c.server_key = d + "/server.key";
    c.unknown_ca_cert = d + "/unknown_ca.pem";
    c.unknown_ca_key = d + "/unknown_ca.key";
    c.other_cert = d + "/other.pem";
    c.other_key = d + "/other.key";
    c.self_signed_cert = d + "/self_signed.pem";
    c.self_signed_key = d + "/self_signed.key";
    c.client_cert = d + "/client.pem";
    c.client_key = d + "/client.key";
  }
};

}  // namespace loop::test

// Helpers for the transport tests: a protocol that records what happens to it, a hash.
#pragma once

#include <openssl/evp.h>

#include <loop/loop.hpp>
#include <string>
#include <vector>

namespace test {

/// Records every callback, in order; optional hooks for the test's own reactions.
class RecordingProtocol : public loop::Protocol {
 public:
  void connection_made(loop::BaseTransport& t) override {
    events.push_back("connection_made");
    transport = dynamic_cast<loop::Transport*>(&t);
    if (on_made) on_made(*transport);
  }
  void data_received(std::string_view data) override {
    if (events.empty() || events.back() != "data_received") events.push_back("data_received");
    received.append(data);
    if (on_data) on_data(data);
  }
  bool eof_received() override {
    events.push_back("eof_received");
    return on_eof ? on_eof() : false;
  }
  void connection_lost(std::exception_ptr exc) override {
    events.push_back("connection_lost");
    lost_error = exc;
    lost = true;
    if (on_lost) on_lost(exc);
  }
  void pause_writing() override {
    ++paused;
    if (on_pause) on_pause();
  }
  void resume_writing() override {
    ++resumed;
    if (on_resume) on_resume();
  }

  loop::Transport* transport = nullptr;
  std::vector<std::string> events;
  std::string received;
  bool lost = false;
  std::exception_ptr lost_error;
  int paused = 0, resumed = 0;
  std::function<void(loop::Transport&)> on_made;
  std::function<void(std::string_view)> on_data;
  std::function<bool()> on_eof;
  std::function<void(std::exception_ptr)> on_lost;
  std::function<void()> on_pause, on_resume;
};

/// SHA-256 that can be fed in pieces, hex output (Python's hashlib.sha256().hexdigest()).
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  void update(std::string_view d) { EVP_DigestUpdate(ctx_, d.data(), d.size()); }
  std::string hex() {
    unsigned char md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md, &n);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < n; ++i) {
      out += digits[md[i] >> 4];
      out += digits[md[i] & 15];
    }
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

/// Deterministic pseudo-random bytes (xorshift), so both ends can agree on a hash.
inline std::string pattern(std::size_t n, std::uint64_t seed = 88172645463325252ull) {
  std::string s(n, '\0');
  std::uint64_t x = seed;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x);
  }
  return s;
}

/// Runs the loop until `done()` or `timeout` seconds pass (then throws): bounded tests.
inline void run_until(loop::EventLoop& lp, std::function<bool()> done, double timeout = 20) {
  double deadline = lp.time() + timeout;
  while (!done()) {
    if (lp.time() > deadline) throw std::runtime_error("test timed out");
    lp.call_later(0.01, [&lp] { lp.stop(); });
    lp.run_forever();
  }
}

inline std::string what(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "?";
  }
}

}  // namespace test

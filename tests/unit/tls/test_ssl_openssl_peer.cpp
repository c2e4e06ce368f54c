// The TLS layer against real OpenSSL peers (`openssl s_server` / `s_client`) over TCP on
// 127.0.0.1. Until the socket transports merge, a minimal test-only transport over an asio
// socket carries the bytes (asio handlers only enqueue; the protocol runs from the loop).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <deque>
#include <loop/loop.hpp>
#include <loop/sslproto.hpp>
#include <thread>

#include "test_certs.hpp"

using asio::ip::tcp;
using loop::SSLContext;
using loop::SSLProtocol;
using loop::test::TestCerts;

namespace {

class TcpTestTransport : public loop::Transport,
                         public std::enable_shared_from_this<TcpTestTransport> {
 public:
  TcpTestTransport(loop::EventLoop& lp, tcp::socket sock) : lp_(lp), sock_(std::move(sock)) {}
  void start(std::shared_ptr<loop::BaseProtocol> p) {
    protocol_ = std::move(p);
    auto self = shared_from_this();
    lp_.call_soon([self] {
      self->protocol_->connection_made(*self);
      self->read();
    });
  }
  std::any get_extra_info(std::string_view name, std::any def = {}) const override {
    if (name == "peername") return sock_.remote_endpoint().port();
    return def;
  }
  bool is_closing() const override { return closing_; }
  void close() override {
    if (closing_) return;
    closing_ = true;
    if (out_.empty()) {
      auto self = shared_from_this();
      lp_.call_soon([self] { self->lose(nullptr); });
    }
  }
  void set_protocol(std::shared_ptr<loop::BaseProtocol> p) override { protocol_ = std::move(p); }
  std::shared_ptr<loop::BaseProtocol> get_protocol() const override { return protocol_; }
  bool is_reading() const override { return reading_; }
  void pause_reading() override { reading_ = false; }
  void resume_reading() override {
    if (reading_) return;
    reading_ = true;
    if (!read_pending_ && !lost_) read();
  }
  void write(std::string_view data) override {
    if (lost_ || data.empty()) return;
    out_.emplace_back(data);
    if (out_.size() == 1) flush();
  }
  void write_eof() override {}
  bool can_write_eof() const override { return false; }
  void abort() override {
    auto self = shared_from_this();
    lp_.call_soon([self] { self->lose(nullptr); });
  }
  std::size_t get_write_buffer_size() const override {
    std::size_t n = 0;
    for (auto& s : out_) n += s.size();
    return n;
  }
  void set_write_buffer_limits(std::optional<std::size_t>, std::optional<std::size_t>) override {}
  std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override { return {0, 0}; }

 private:
  void read() {
    read_pending_ = true;
    auto self = shared_from_this();
    sock_.async_read_some(asio::buffer(buf_), [self](std::error_code ec, std::size_t n) {
      self->lp_.call_soon([self, ec, n] { self->on_read(ec, n); });
    });
  }
  void on_read(std::error_code ec, std::size_t n) {
    read_pending_ = false;
    if (lost_) return;
    auto p = std::dynamic_pointer_cast<loop::Protocol>(protocol_);
    if (ec == asio::error::eof) {
      if (!p->eof_received()) close();
      return;
    }
    if (ec) {
      lose(std::make_exception_ptr(std::system_error(ec)));
      return;
    }
    p->data_received(std::string_view(buf_, n));
    if (reading_ && !lost_) read();
  }
  void flush() {
    auto self = shared_from_this();
    asio::async_write(sock_, asio::buffer(out_.front()), [self](std::error_code ec, std::size_t) {
      self->lp_.call_soon([self, ec] {
        if (self->lost_) return;
        if (ec) return self->lose(std::make_exception_ptr(std::system_error(ec)));
        self->out_.pop_front();
        if (!self->out_.empty())
          self->flush();
        else if (self->closing_)
          self->lose(nullptr);
      });
    });
  }
  void lose(std::exception_ptr e) {
    if (lost_) return;
    lost_ = closing_ = true;
    std::error_code ec;
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
    protocol_->connection_lost(e);
  }

  loop::EventLoop& lp_;
  tcp::socket sock_;
  std::shared_ptr<loop::BaseProtocol> protocol_;
  char buf_[65536];
  std::deque<std::string> out_;
  bool closing_ = false, lost_ = false, reading_ = true, read_pending_ = false;
};

struct App : loop::Protocol {
  loop::Transport* transport = nullptr;
  std::string received;
  bool lost = false;
  std::function<void(App&)> on_made, on_data;
  void connection_made(loop::BaseTransport& t) override {
    transport = dynamic_cast<loop::Transport*>(&t);
    if (on_made) on_made(*this);
  }
  void data_received(std::string_view d) override {
    received += d;
    if (on_data) on_data(*this);
  }
  void connection_lost(std::exception_ptr) override { lost = true; }
};

bool run_until(loop::EventLoop& lp, const std::function<bool()>& pred, double timeout = 30) {
  double deadline = lp.time() + timeout;
  std::function<void()> check = [&] {
    if (pred() || lp.time() > deadline)
      lp.stop();
    else
      lp.call_later(0.005, check);
  };
  lp.call_soon(check);
  lp.run_forever();
  return pred();
}

// s_server cannot report the port it bound: take one the kernel hands out, free it, pass it.
unsigned short free_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

// Runs argv as a child process with stdin/stdout/stderr on /dev/null; returns its pid.
pid_t spawn(std::vector<std::string> args) {
  pid_t pid = fork();
  if (pid == 0) {
    std::freopen("/dev/null", "r", stdin);
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

TEST_CASE("our client against openssl s_server -www") {
  const auto& certs = TestCerts::get();
  unsigned short port = free_port();
  pid_t server =
      spawn({"openssl", "s_server", "-accept", "127.0.0.1:" + std::to_string(port), "-cert",
             certs.server_cert, "-key", certs.server_key, "-www", "-naccept", "1"});
  REQUIRE(server > 0);
  struct Reap {
    pid_t pid;
    ~Reap() {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  } reap{server};

  loop::EventLoop lp;
  tcp::socket sock(lp.io_context());
  bool connected = false;
  for (int i = 0; i < 100 && !connected; ++i) {  // until s_server listens
    std::error_code ec;
    sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    connected = !ec;
    if (!connected) {
      sock.close();
      usleep(50000);
    }
  }
  REQUIRE(connected);
  auto app = std::make_shared<App>();
  app->on_made = [](App& a) { a.transport->write("GET / HTTP/1.0\r\n\r\n"); };
  auto waiter = lp.create_future<void>();
  loop::SSLProtocolOptions opts;
  opts.server_hostname = "localhost";
  auto ssl = SSLProtocol::make(
      lp, app, SSLContext::create_default_context(loop::Purpose::server_auth, certs.ca_cert),
      waiter, opts);
  auto tr = std::make_shared<TcpTestTransport>(lp, std::move(sock));
  tr->start(ssl);
  REQUIRE(run_until(lp, [&] { return app->lost; }));
  CHECK_NOTHROW(waiter.result());
  CHECK_THAT(app->received, Catch::StartsWith("HTTP/1.0 200 ok"));
  CHECK_THAT(app->received, Catch::Contains("TLSv1.3"));  // s_server's status page
}

TEST_CASE("openssl s_client against our server: verified, echoed, closed") {
  const auto& certs = TestCerts::get();
  loop::EventLoop lp;
  tcp::acceptor acceptor(lp.io_context(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  unsigned short port = acceptor.local_endpoint().port();
  std::string input = certs.write_file("s_client_input.txt", "hello from s_client\n");
  std::atomic<bool> done{false};
  std::string output;
  std::thread client([&] {
    std::string cmd = "openssl s_client -connect 127.0.0.1:" + std::to_string(port) +
                      " -servername localhost -verify_return_error -CAfile " + certs.ca_cert +
                      " -quiet < " + input + " 2>&1";
    if (FILE* f = popen(cmd.c_str(), "r")) {
      char buf[4096];
      while (std::size_t n = fread(buf, 1, sizeof buf, f)) output.append(buf, n);
      pclose(f);
    }
    done = true;
  });
  std::error_code ec;
  tcp::socket sock(lp.io_context());
  acceptor.accept(sock, ec);  // blocking: s_client connects right away
  REQUIRE_FALSE(ec);
  auto app = std::make_shared<App>();
  app->on_data = [](App& a) {
    if (a.received.find('\n') == std::string::npos) return;
    std::string up = a.received;
    for (auto& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    a.transport->write(up);
    a.transport->close();  // close_notify; s_client exits on it
  };
  auto ctx = SSLContext::create_default_context(loop::Purpose::client_auth);
  ctx->load_cert_chain(certs.server_cert, certs.server_key);
  loop::SSLProtocolOptions opts;
  opts.server_side = true;
  auto waiter = lp.create_future<void>();
  auto ssl = SSLProtocol::make(lp, app, ctx, waiter, opts);
  auto tr = std::make_shared<TcpTestTransport>(lp, std::move(sock));
  tr->start(ssl);
  bool ok = run_until(lp, [&] { return done.load() && app->lost; });
  client.join();
  REQUIRE(ok);
  CHECK_NOTHROW(waiter.result());
  CHECK(app->received == "hello from s_client\n");
  CHECK_THAT(output, Catch::Contains("HELLO FROM S_CLIENT"));
  CHECK_THAT(output, Catch::Contains("verify return:1"));
}

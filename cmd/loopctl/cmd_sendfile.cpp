// loopctl sendfile serve|send: loop.sendfile on both ends. `serve` sends the whole FILE to every
// client that connects, then closes the connection (sendfile(2) on plain sockets, the
// read-and-write fallback over TLS); `send` connects and sends FILE (or a range of it).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "serve.hpp"

namespace loopctl {

// One served client: connection_made starts the transfer as a task; connection_lost (the
// client reset, or shutdown aborted it) cancels it, so that it never waits on a closed socket.
class SendfileServeProtocol final : public loop::Protocol,
                                    public std::enable_shared_from_this<SendfileServeProtocol> {
 public:
  SendfileServeProtocol(loop::EventLoop& lp, ConnectionSet set, int file_fd)
      : lp_(lp), set_(set), file_fd_(file_fd) {}

  void connection_made(loop::BaseTransport& t) override {
    transport_ = dynamic_cast<loop::Transport*>(&t);
    set_.add(&t);
    task_ = lp_.create_task(send_file(shared_from_this()));
  }
  void data_received(std::string_view) override {}  // whatever a client sends is ignored
  bool eof_received() override {
    eof_ = true;
    return !sent_;  // a half-closed client still gets FILE; once it has it, close
  }
  void connection_lost(std::exception_ptr) override {
    set_.remove(transport_);
    transport_ = nullptr;
    if (task_ && !task_->done()) task_->cancel();
    if (linger_) linger_->cancel();
    task_.reset();
    linger_.reset();
  }

 private:
  static loop::Coroutine<void> send_file(std::shared_ptr<SendfileServeProtocol> self) {
    bool ok = false;
    try {
      co_await self->lp_.sendfile(*self->transport_, self->file_fd_);
      ok = true;
    } catch (...) {
      // The client went away (reset, broken pipe) or shutdown cancelled us: nothing to tell
      // anyone but this connection, which is closed below if it is still there.
    }
    if (self->transport_) {
      if (ok)
        self->finish();
      else
        self->transport_->abort();
    }
  }

  // Closing a socket with unread input makes the kernel send a RST, which can destroy the
  // file's tail before the client read it. So: EOF after the file, then read (and drop) until
  // the client's EOF, for at most kLinger seconds.
  void finish() {
    sent_ = true;
    if (eof_ || !transport_->can_write_eof()) {
      transport_->close();  // flushes what the fallback buffered, then closes
      return;
    }
    transport_->write_eof();
    // Weak: this protocol holds the timer's handle, a strong capture would be a cycle.
    std::weak_ptr<SendfileServeProtocol> weak = weak_from_this();
    linger_ = lp_.call_later(kLinger, [weak] {
      auto self = weak.lock();
      if (self && self->transport_) self->transport_->close();
    });
  }

  static constexpr double kLinger = 10.0;

  loop::EventLoop& lp_;
  ConnectionSet set_;  // shares the server's set
  int file_fd_;
  loop::Transport* transport_ = nullptr;
  std::optional<loop::Task<void>> task_;
  std::optional<loop::TimerHandle> linger_;
  bool eof_ = false;
  bool sent_ = false;
};

// sendfile send's side: only notices when the connection is gone.
class SendfileSendProtocol final : public loop::Protocol {
 public:
  explicit SendfileSendProtocol(loop::EventLoop& lp) : lost_(lp.create_future<void>()) {}
  void data_received(std::string_view) override {}
  void connection_lost(std::exception_ptr) override {
    if (!lost_.done()) lost_.set_result();
  }
  loop::Future<void> lost() const { return lost_; }

 private:
  loop::Future<void> lost_;
};

namespace {

// A regular file opened for reading, or a RuntimeFailure naming it; returns its size too.
int open_file(const std::string& path, std::size_t& size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw RuntimeFailure("cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw RuntimeFailure("cannot send " + path + ": not a regular file");
  }
  size = static_cast<std::size_t>(st.st_size);
  return fd;
}

struct FileCloser {
  int fd;
  ~FileCloser() { ::close(fd); }
};

// Outside the coroutines: GCC 12 miscompiles string literals in coroutine bodies.
[[noreturn]] void throw_send_error(const std::string& path, const Endpoint& ep,
                                   std::exception_ptr failed) {
  try {
    std::rethrow_exception(failed);
  } catch (const std::system_error& e) {
    throw RuntimeFailure("sending " + path + " to " + ep.to_string() +
                         " failed: " + e.code().message());
  } catch (const std::exception& e) {
    throw RuntimeFailure("sending " + path + " to " + ep.to_string() + " failed: " + e.what());
  }
}
void print_sent(std::size_t n) {
  std::printf("sent %zu bytes\n", n);
  std::fflush(stdout);
}

class Sendfile final : public Command {
 public:
  const char* name() const override { return "sendfile"; }
  const char* description() const override {
    return "Send a file with loop.sendfile: 'serve' sends it to every client that connects, "
           "'send' connects and sends it (or a range of it)";
  }
  void setup(CLI::App& app) override {
    app.require_subcommand(1);
    serve_ = app.add_subcommand(
        "serve",
        "Send the whole FILE to every client that connects, then close the connection "
        "(zero-copy sendfile(2) on plain sockets, read-and-write over TLS); runs until SIGINT "
        "or SIGTERM");
    serve_->add_option("file", serve_file_, "The file to send")->required();
    serve_->add_option("--host", host_, "The address to listen on ('' = every interface)")
        ->transform(host_address());
    serve_->add_option("--port", port_, "The TCP port (0 = any free one, printed)")
        ->check(CLI::Range(0, 65535).description("0-65535"));
    serve_->add_option("--unix", unix_, "Listen on this unix socket path instead (@NAME: abstract)")
        ->check(non_empty("unix socket path"));
    tls_.add_to(*serve_);
    serve_
        ->add_option("--workers", workers_,
                     "Run N loops on N threads sharing the port with SO_REUSEPORT")
        ->check(CLI::Range(1, 1024).description("1-1024"));

    send_ = app.add_subcommand(
        "send",
        "Connect to ENDPOINT and send FILE (or --count bytes from --offset) with "
        "loop.sendfile; print the byte count sent");
    send_->add_option("file", send_file_, "The file to send")->required();
    send_->add_option("endpoint", endpoint_, "HOST:PORT, [V6ADDR]:PORT or unix:PATH")->required();
    send_->add_option("--offset", offset_, "Start at this byte of FILE")
        ->check(non_negative_number());
    send_->add_option("--count", count_, "Send at most this many bytes (0 = up to the end)")
        ->check(non_negative_number());
  }

  int run(loop::EventLoop& lp) override {
    if (serve_->parsed()) return run_serve(lp);
    return run_send(lp);
  }
  // Only TLS is refused: `send` has no timer, and `serve`'s linger after a file, like every
  // server's shutdown grace, only ends early.
  std::string virtual_clock_conflict() const override {
    bool tls = serve_->parsed() && !tls_.cert.empty();
    return tls ? tls_virtual_clock_conflict("sendfile serve") : std::string();
  }

 private:
  int run_serve(loop::EventLoop& lp) {
    std::size_t size = 0;
    ::close(open_file(serve_file_, size));  // a missing or unreadable FILE fails here, once
    auto ssl = tls_.context();
    if (workers_ > 1 && !unix_.empty())
      throw UsageError("--workers needs a TCP port: unix sockets cannot share a path");
    if (workers_ > 1 && port_ == 0) port_ = pick_shared_port(host_);
    std::string where = unix_.empty() ? Endpoint{Endpoint::Kind::tcp, host_, port_, {}}.to_string()
                                      : "unix:" + unix_;
    return run_workers(lp, workers_,
                       [this, ssl, where](int index, loop::EventLoop& wl, loop::Future<int> stop) {
                         // Each worker its own open file: no file position shared between threads.
                         std::size_t unused = 0;
                         return serve(wl, open_file(serve_file_, unused), ssl, where, index, stop);
                       });
  }

  loop::Coroutine<int> serve(loop::EventLoop& lp, int fd, std::shared_ptr<loop::SSLContext> ssl,
                             std::string where, int index, loop::Future<int> stop) {
    FileCloser closer{fd};
    ConnectionSet connections;
    auto factory = [&lp, &connections, fd] {
      return std::make_shared<SendfileServeProtocol>(lp, connections, fd);
    };
    loop::ServerOptions opts;
    opts.ssl = ssl;
    opts.reuse_port = workers_ > 1;
    std::shared_ptr<loop::Server> server;
    std::exception_ptr failed;
    try {
      if (unix_.empty())
        server = co_await lp.create_server(factory, host_, port_, opts);
      else
        server = co_await lp.create_unix_server(factory, unix_, opts);
    } catch (const std::exception&) {
      failed = std::current_exception();
    }
    if (failed) throw_listen_error(where, failed, unix_);
    std::vector<std::shared_ptr<loop::Server>> servers;
    servers.push_back(server);
    // run_workers installed the signal handlers before the line scripts wait for.
    if (index == 0) print_listening(*server);
    co_await serve_until(lp, stop, servers, connections);
    co_return 0;
  }

  int run_send(loop::EventLoop& lp) {
    Endpoint ep = parse_endpoint(endpoint_);
    std::size_t size = 0;
    int fd = open_file(send_file_, size);
    FileCloser closer{fd};
    if (offset_ > size)
      throw RuntimeFailure("--offset " + std::to_string(offset_) + " is past the end of " +
                           send_file_ + " (" + std::to_string(size) + " bytes)");
    return lp.run_until_complete(send(lp, ep, fd));
  }

  loop::Coroutine<int> send(loop::EventLoop& lp, Endpoint ep, int fd) {
    auto factory = [&lp] { return std::make_shared<SendfileSendProtocol>(lp); };
    std::shared_ptr<loop::Transport> transport;
    std::shared_ptr<SendfileSendProtocol> protocol;
    std::string error;
    try {
      loop::ConnectionPair<SendfileSendProtocol> pair;
      if (ep.is_unix())
        pair = co_await lp.create_unix_connection(factory, ep.path);
      else
        pair = co_await lp.create_connection(factory, ep.host, ep.port);
      transport = pair.first;
      protocol = pair.second;
    } catch (const std::exception& e) {
      error = connect_error(ep, e);
    }
    if (!error.empty()) throw RuntimeFailure(error);
    std::optional<std::size_t> count;
    if (count_ > 0) count = count_;
    std::size_t sent = 0;
    std::exception_ptr failed;
    try {
      sent = co_await lp.sendfile(*transport, fd, offset_, count);
    } catch (const std::exception&) {
      failed = std::current_exception();
    }
    if (failed) {
      transport->abort();
      co_await protocol->lost();
      throw_send_error(send_file_, ep, failed);
    }
    transport->close();  // after the buffered bytes (the fallback's) are flushed
    co_await protocol->lost();
    print_sent(sent);
    co_return 0;
  }

  CLI::App* serve_ = nullptr;
  CLI::App* send_ = nullptr;
  std::string serve_file_;
  std::string host_ = "127.0.0.1";
  int port_ = 8888;
  std::string unix_;
  int workers_ = 1;
  ServerTlsOptions tls_;
  std::string send_file_;
  std::string endpoint_;
  std::size_t offset_ = 0;
  std::size_t count_ = 0;
};

}  // namespace

std::unique_ptr<Command> make_sendfile() {
  return std::make_unique<Sendfile>();
}

}  // namespace loopctl

// loopctl echo-server: a protocol-based echo server (create_server / create_unix_server).
// Every byte a client sends comes back until the client closes; after the client's EOF the
// rest is echoed, then the server closes (half-close honoured). --cert/--key: TLS.
// --exec CMD: each connection is joined to a new child running CMD instead (exec_bridge.hpp).
#include <cstdio>

#include "exec_bridge.hpp"
#include "serve.hpp"

namespace loopctl {

// asyncio's EchoServerProtocol, with flow control: a client that does not read its echoes
// stops us reading from it, so memory stays bounded by the write-buffer limits.
class EchoProtocol final : public loop::Protocol {
 public:
  explicit EchoProtocol(ConnectionSet set) : set_(std::move(set)) {}
  void connection_made(loop::BaseTransport& t) override {
    transport_ = dynamic_cast<loop::Transport*>(&t);
    set_.add(&t);
  }
  void data_received(std::string_view data) override { transport_->write(data); }
  bool eof_received() override { return false; }  // close once the echoes are flushed
  void pause_writing() override { transport_->pause_reading(); }
  void resume_writing() override { transport_->resume_reading(); }
  void connection_lost(std::exception_ptr) override { set_.remove(transport_); }

 private:
  ConnectionSet set_;  // shares the server's set
  loop::Transport* transport_ = nullptr;
};

namespace {

class EchoServer final : public Command {
 public:
  const char* name() const override { return "echo-server"; }
  const char* description() const override {
    return "Echo every byte each client sends until it closes (create_server); TLS with "
           "--cert/--key; --exec CMD joins each client to a new child instead; runs until "
           "SIGINT or SIGTERM";
  }
  void setup(CLI::App& app) override {
    app.add_option("--host", host_, "The address to listen on ('' = every interface)")
        ->transform(host_address());
    app.add_option("--port", port_, "The TCP port (0 = any free one, printed)")
        ->check(CLI::Range(0, 65535).description("0-65535"));
    app.add_option("--unix", unix_, "Listen on this unix socket path instead (@NAME: abstract)")
        ->check(non_empty("unix socket path"));
    app.add_option("--unix-mode", unix_mode_,
                   "The unix socket file's permissions, exactly (e.g. 600: only this user may "
                   "connect); default: 777 minus the umask")
        ->check(octal_mode());
    tls_.add_to(app);
    app.add_option("--backlog", backlog_, "The listen backlog")->check(positive_number());
    app.add_flag("--reuse-port", reuse_port_, "Set SO_REUSEPORT (several servers on one port)");
    app.add_option("--workers", workers_,
                   "Run N loops on N threads sharing the port with SO_REUSEPORT")
        ->check(CLI::Range(1, 1024).description("1-1024"));
    app.add_option("--exec", exec_,
                   "Instead of echoing, run CMD with /bin/sh -c for each client: the client's "
                   "bytes go to its stdin, its stdout goes back, its stderr is ours (ncat -l "
                   "-c); the client's EOF closes its stdin, its stdout's EOF closes the "
                   "connection, a client that leaves gets it terminated")
        ->type_name("CMD");
  }

  int run(loop::EventLoop& lp) override {
    auto ssl = tls_.context();
    if (workers_ > 1 && !unix_.empty())
      throw UsageError("--workers needs a TCP port: unix sockets cannot share a path");
    if (!unix_mode_.empty() && unix_.empty()) throw UsageError("--unix-mode needs --unix");
    if (workers_ > 1 && port_ == 0) port_ = pick_shared_port(host_);
    std::string where = unix_.empty() ? Endpoint{Endpoint::Kind::tcp, host_, port_, {}}.to_string()
                                      : "unix:" + unix_;
    return run_workers(lp, workers_,
                       [this, ssl, where](int index, loop::EventLoop& wl, loop::Future<int> stop) {
                         return serve(wl, ssl, where, index, stop);
                       });
  }
  std::string virtual_clock_conflict() const override {
    return tls_.cert.empty() ? std::string() : tls_virtual_clock_conflict(name());
  }

 private:
  loop::Coroutine<int> serve(loop::EventLoop& lp, std::shared_ptr<loop::SSLContext> ssl,
                             std::string where, int index, loop::Future<int> stop) {
    ConnectionSet connections;
    BridgeSet bridges;
    std::function<std::shared_ptr<loop::Protocol>()> factory =
        make_factory(lp, connections, bridges);
    loop::ServerOptions opts;
    opts.backlog = backlog_;
    opts.reuse_port = reuse_port_ || workers_ > 1;
    opts.ssl = ssl;
    if (!unix_mode_.empty()) opts.mode = parse_octal_mode(unix_mode_);
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
    if (index == 0) print_listening(*server);  // the workers share these sockets' addresses
    std::vector<std::shared_ptr<loop::Server>> servers;
    servers.push_back(server);
    // --exec: children are told to end as soon as we stop; their output still reaches their
    // clients, whose connections then close within the grace period.
    stop.add_done_callback([bridges](loop::Future<int>) { bridges.terminate_all(); });
    co_await serve_until(lp, stop, servers, connections);
    co_await reap_children(lp, bridges);
    co_return 0;
  }

  std::function<std::shared_ptr<loop::Protocol>()> make_factory(loop::EventLoop& lp,
                                                                ConnectionSet connections,
                                                                BridgeSet bridges) {
    if (!exec_.empty()) return exec_protocol_factory(lp, exec_, connections, bridges);
    return [connections] { return std::make_shared<EchoProtocol>(connections); };
  }

  std::string host_ = "127.0.0.1";
  int port_ = 8888;
  std::string unix_;
  std::string unix_mode_;
  ServerTlsOptions tls_;
  int backlog_ = 100;
  bool reuse_port_ = false;
  int workers_ = 1;
  std::string exec_;
};

}  // namespace

std::unique_ptr<Command> make_echo_server() {
  return std::make_unique<EchoServer>();
}

}  // namespace loopctl

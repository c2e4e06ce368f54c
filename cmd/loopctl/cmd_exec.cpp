// loopctl exec CMD --connect ENDPOINT: connects, runs CMD with /bin/sh -c, and joins the two
// (socat's EXEC:CMD TCP:HOST:PORT, ncat -e in connect mode): the peer's bytes go to the
// child's stdin, its stdout goes to the peer. Exits with the child's status once it exited and
// its output was flushed.
#include <csignal>
#include <cstdio>

#include "exec_bridge.hpp"

namespace loopctl {
namespace {

// Outside the coroutine: GCC 12 miscompiles string literals and temporaries in coroutine
// bodies.
std::shared_ptr<ExecBridge> make_bridge(loop::EventLoop& lp, const std::string& command,
                                        loop::Future<int> done) {
  auto bridge = std::make_shared<ExecBridge>(lp, command);
  std::weak_ptr<ExecBridge> weak = bridge;
  bridge->on_done = [done, weak](std::optional<int> returncode) {
    if (done.done()) return;
    if (returncode) {
      done.set_result(*returncode);
    } else {
      auto self = weak.lock();
      std::string why = self ? self->spawn_error() : std::string("the command did not start");
      done.set_exception(std::make_exception_ptr(RuntimeFailure(why)));
    }
  };
  return bridge;
}

loop::ConnectionOptions connection_options(std::shared_ptr<loop::SSLContext> ssl,
                                           const ClientTlsOptions& tls) {
  loop::ConnectionOptions opts;
  opts.ssl = ssl;
  if (ssl && !tls.server_hostname.empty()) opts.server_hostname = tls.server_hostname;
  return opts;
}

// SIGINT/SIGTERM: the child is terminated (its output still flushed), then we exit 128+N.
void terminate_on_interrupt(loop::EventLoop& lp, std::shared_ptr<ExecBridge> bridge,
                            int& caught) {  // `caught` outlives the loop's handlers
  for (int sig : {SIGINT, SIGTERM}) {
    lp.add_signal_handler(sig, [bridge, &caught, sig] {
      if (!caught) caught = sig;
      bridge->terminate_child();
    });
  }
}

class Exec final : public Command {
 public:
  const char* name() const override { return "exec"; }
  const char* description() const override {
    return "Connect to --connect ENDPOINT and join the connection to a child running CMD "
           "(/bin/sh -c): the peer's bytes go to its stdin, its stdout goes back (socat "
           "EXEC:, ncat -e); exit with the child's status";
  }
  void setup(CLI::App& app) override {
    app.add_option("command", command_, "The command, run by /bin/sh -c")
        ->required()
        ->type_name("CMD");
    app.add_option("--connect", connect_, "HOST:PORT, [V6ADDR]:PORT or unix:PATH to connect to")
        ->required()
        ->type_name("ENDPOINT");
    tls_.add_to(app);
    app.footer(
        "The peer's EOF closes the child's stdin; the child's stdout EOF closes the "
        "connection once flushed; a peer that resets the connection gets the child "
        "terminated (SIGTERM, SIGKILL 2 s later). The child's stderr is loopctl's. Exit "
        "status: the child's (128+N if signal N killed it), 1 if the connection failed, "
        "128+N if SIGINT/SIGTERM stopped loopctl (the child is terminated first).");
  }

  int run(loop::EventLoop& lp) override {
    Endpoint ep = parse_endpoint(connect_);
    auto ssl = tls_.context();
    return lp.run_until_complete(talk(lp, ep, ssl));
  }
  std::string virtual_clock_conflict() const override {
    return tls_.enabled() ? tls_virtual_clock_conflict(name()) : std::string();
  }

 private:
  loop::Coroutine<int> talk(loop::EventLoop& lp, Endpoint ep,
                            std::shared_ptr<loop::SSLContext> ssl) {
    loop::Future<int> done = lp.create_future<int>();
    std::shared_ptr<ExecBridge> bridge = make_bridge(lp, command_, done);
    auto factory = [bridge] { return bridge->socket_protocol(); };
    loop::ConnectionOptions opts = connection_options(ssl, tls_);
    std::string error;
    try {
      if (ep.is_unix())
        co_await lp.create_unix_connection(factory, ep.path, opts);
      else
        co_await lp.create_connection(factory, ep.host, ep.port, opts);
    } catch (const std::exception& e) {
      error = connect_error(ep, e);
    }
    if (!error.empty()) throw RuntimeFailure(error);
    terminate_on_interrupt(lp, bridge, caught_);
    int returncode = co_await done;
    if (caught_) co_return 128 + caught_;
    co_return exit_status(returncode);
  }

  std::string command_;
  std::string connect_;
  ClientTlsOptions tls_;
  int caught_ = 0;  // the SIGINT/SIGTERM that stopped us
};

}  // namespace

std::unique_ptr<Command> make_exec() {
  return std::make_unique<Exec>();
}

}  // namespace loopctl

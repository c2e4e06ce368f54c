// loopctl tls-proxy: forwards bytes both ways between each accepted client and a new connection
// to the upstream. TLS on either leg: --cert/--key terminate TLS from clients, --upstream-tls
// speaks TLS to the upstream, --starttls accepts plaintext and upgrades the accepted connection
// in place with start_tls when the client sends the line STARTTLS.
#include <cstdio>

#include "serve.hpp"
#include "starttls_line.hpp"

namespace loopctl {

namespace {

struct ProxyConfig {
  loop::EventLoop* lp = nullptr;
  Endpoint upstream;
  std::shared_ptr<loop::SSLContext> client_ssl;    // --cert/--key
  std::shared_ptr<loop::SSLContext> upstream_ssl;  // --upstream-tls
  std::string server_hostname;
  bool starttls = false;
  ConnectionSet connections;  // shares the worker's set
};

// One side of a proxied connection. Flow control crosses over: when this side's transport is
// full, the other side stops reading, so a slow reader holds memory to the water marks.
class Leg : public loop::Protocol {
 public:
  loop::Transport* transport = nullptr;
  std::shared_ptr<Leg> peer;  // the other side, once both exist
  std::string pending;        // what arrived before the other side was connected
  bool eof_in = false;        // this side's peer said EOF
  bool eof_out = false;       // EOF was passed on to this side's peer

  void connection_made(loop::BaseTransport& t) override {
    transport = dynamic_cast<loop::Transport*>(&t);
  }
  void data_received(std::string_view data) override { forward(data); }
  bool eof_received() override {
    eof_in = true;
    pass_eof_on();  // or link() does, once the other side is connected
    close_when_both_ways_done();
    return true;
  }
  // Half-close crosses over (on a TLS leg as close_notify): what the other side still
  // sends back comes through. A side closes once EOF went both ways through it.
  void pass_eof_on() {
    if (!eof_in || !peer || !peer->transport || peer->eof_out) return;
    peer->transport->write_eof();
    peer->eof_out = true;
    peer->close_when_both_ways_done();
  }
  void close_when_both_ways_done() {
    if (eof_in && eof_out && transport && !transport->is_closing()) transport->close();
  }
  void pause_writing() override {
    if (peer && peer->transport) peer->transport->pause_reading();
  }
  void resume_writing() override {
    if (peer && peer->transport) peer->transport->resume_reading();
  }
  void connection_lost(std::exception_ptr) override {
    if (peer && peer->transport && !peer->transport->is_closing()) peer->transport->close();
    if (peer) peer->peer.reset();  // break the cycle
    transport = nullptr;
    peer.reset();
  }

  void forward(std::string_view data) {
    if (peer && peer->transport) {
      peer->transport->write(data);
    } else {
      pending.append(data);
      if (pending.size() > (1u << 20) && transport) transport->pause_reading();
    }
  }
  void link(std::shared_ptr<Leg> other) {
    peer = other;
    if (!pending.empty() && peer->transport) peer->transport->write(pending);
    pending.clear();
    pass_eof_on();  // the EOF that came before the other side was connected
    if (transport) transport->resume_reading();
  }
};

// Outside coroutines: GCC 12 miscompiles string literals in coroutine bodies.
void report_upstream_failure(const ProxyConfig& cfg, const std::string& client,
                             const std::exception& e) {
  std::fprintf(stderr, "loopctl: %s; closing client %s\n", connect_error(cfg.upstream, e).c_str(),
               client.c_str());
  std::fflush(stderr);
}

void report_starttls_failure(const std::string& client, const std::exception& e) {
  std::fprintf(stderr, "loopctl: STARTTLS with %s failed: %s\n", client.c_str(), e.what());
  std::fflush(stderr);
}

class ClientLeg final : public Leg, public std::enable_shared_from_this<ClientLeg> {
 public:
  explicit ClientLeg(std::shared_ptr<const ProxyConfig> cfg)
      : cfg_(*cfg), cfg_owner_(std::move(cfg)) {}

  void connection_made(loop::BaseTransport& t) override {
    Leg::connection_made(t);
    cfg_.connections.add(&t);
    base_ = &t;
    auto peer_addr = t.extra<loop::SocketAddress>("peername");
    client_ = peer_addr ? peer_addr->to_string() : std::string("?");
    if (cfg_.starttls)
      awaiting_line_ = true;  // nothing goes upstream before the upgrade
    else
      task_ = cfg_.lp->create_task(connect_upstream(shared_from_this()));
  }
  void data_received(std::string_view data) override {
    if (!awaiting_line_) return Leg::data_received(data);
    switch (line_.feed(data)) {
      case StartTlsLine::Verdict::need_more:
        return;
      case StartTlsLine::Verdict::refuse:
        return refuse(line_.refusal());
      case StartTlsLine::Verdict::upgrade:
        break;
    }
    awaiting_line_ = false;
    // Read nothing more until start_tls hands the socket to the TLS layer: whatever comes
    // next is the client's TLS records.
    transport->pause_reading();
    transport->write("OK STARTTLS\r\n");
    task_ = cfg_.lp->create_task(upgrade_then_connect(shared_from_this()));
  }
  bool eof_received() override {
    if (awaiting_line_) return false;
    return Leg::eof_received();
  }
  void connection_lost(std::exception_ptr exc) override {
    cfg_.connections.remove(base_);
    Leg::connection_lost(exc);
    tls_transport_.reset();
    if (task_ && !task_.done()) task_.cancel();
  }

 private:
  void refuse(const char* answer) {
    awaiting_line_ = false;
    transport->write(answer);
    transport->close();
  }

  static loop::Coroutine<void> upgrade_then_connect(std::shared_ptr<ClientLeg> self) {
    auto raw = std::dynamic_pointer_cast<loop::Transport>(self->base_->shared_transport());
    std::shared_ptr<loop::Transport> upgraded;
    std::shared_ptr<loop::Protocol> protocol = self;
    try {
      auto up = self->cfg_.lp->start_tls(raw, protocol, self->cfg_.client_ssl, true);
      upgraded = co_await std::move(up);
    } catch (const loop::CancelledError&) {
      throw;
    } catch (const std::exception& e) {
      report_starttls_failure(self->client_, e);
      // start_tls closed the connection; without a TLS session our connection_lost never
      // comes, so the socket leaves the server's set here.
      self->cfg_.connections.remove(self->base_);
      co_return;
    }
    self->tls_transport_ = upgraded;
    self->transport = upgraded.get();
    co_await connect_upstream(self);
  }

  static loop::Coroutine<void> connect_upstream(std::shared_ptr<ClientLeg> self) {
    const ProxyConfig& cfg = self->cfg_;
    loop::ConnectionOptions opts;
    opts.ssl = cfg.upstream_ssl;
    if (cfg.upstream_ssl && !cfg.server_hostname.empty())
      opts.server_hostname = cfg.server_hostname;
    auto factory = [] { return std::make_shared<Leg>(); };
    std::shared_ptr<Leg> upstream;
    try {
      if (cfg.upstream.is_unix()) {
        auto pair = co_await cfg.lp->create_unix_connection(factory, cfg.upstream.path, opts);
        upstream = pair.second;
      } else {
        auto pair =
            co_await cfg.lp->create_connection(factory, cfg.upstream.host, cfg.upstream.port, opts);
        upstream = pair.second;
      }
    } catch (const loop::CancelledError&) {
      throw;
    } catch (const std::exception& e) {
      report_upstream_failure(cfg, self->client_, e);
      if (self->transport) self->transport->close();
      co_return;
    }
    if (!self->transport) {
      // The client left meanwhile: what it sent still goes upstream (close() flushes first).
      if (upstream->transport) {
        if (!self->pending.empty()) upstream->transport->write(self->pending);
        upstream->transport->close();
      }
      self->pending.clear();
      co_return;
    }
    upstream->link(self);
    self->link(upstream);
  }

  const ProxyConfig& cfg_;
  std::shared_ptr<const ProxyConfig> cfg_owner_;  // one per worker loop, kept while we live
  loop::BaseTransport* base_ = nullptr;           // the accepted socket's transport
  std::string client_;
  loop::Task<void> task_;
  bool awaiting_line_ = false;  // --starttls: before the upgrade
  StartTlsLine line_;
  std::shared_ptr<loop::Transport> tls_transport_;  // after the upgrade
};

class TlsProxy final : public Command {
 public:
  const char* name() const override { return "tls-proxy"; }
  const char* description() const override {
    return "Forward bytes both ways between each client and a new upstream connection; TLS "
           "on either leg (--cert/--key, --upstream-tls), or STARTTLS upgrades (--starttls)";
  }
  void setup(CLI::App& app) override {
    app.add_option("--listen", listen_, "The endpoint to accept clients on")->required();
    app.add_option("--upstream", upstream_, "The endpoint to forward to")->required();
    server_tls_.add_to(app);
    app.add_flag("--upstream-tls", upstream_tls_.tls, "Speak TLS to the upstream");
    upstream_tls_.add_to(app, false);
    app.add_option("--workers", workers_,
                   "Run N loops on N threads sharing the port with SO_REUSEPORT")
        ->check(CLI::Range(1, 1024).description("1-1024"));
    app.add_flag("--starttls", starttls_,
                 "Accept plaintext; upgrade with start_tls when the client sends the line "
                 "STARTTLS (answered 'OK STARTTLS'); needs --cert/--key");
  }

  std::string virtual_clock_conflict() const override {
    // TLS on either leg: the handshake timeout runs on the simulated clock.
    if (server_tls_.cert.empty() && !upstream_tls_.enabled()) return {};
    return tls_virtual_clock_conflict(name());
  }

  int run(loop::EventLoop& lp) override {
    Endpoint listen = parse_endpoint(listen_);
    cfg_.upstream = parse_endpoint(upstream_);
    cfg_.lp = &lp;
    cfg_.client_ssl = server_tls_.context();
    if (upstream_tls_.enabled()) {
      upstream_tls_.tls = true;
      cfg_.upstream_ssl = upstream_tls_.context();
      cfg_.server_hostname = upstream_tls_.server_hostname;
    }
    cfg_.starttls = starttls_;
    if (starttls_ && !cfg_.client_ssl) throw UsageError("--starttls needs --cert and --key");
    if (workers_ > 1 && listen.is_unix())
      throw UsageError("--workers needs a TCP port: unix sockets cannot share a path");
    if (workers_ > 1 && listen.port == 0) listen.port = pick_shared_port(listen.host);
    return run_workers(lp, workers_,
                       [this, listen](int index, loop::EventLoop& wl, loop::Future<int> stop) {
                         return serve(wl, listen, index, stop);
                       });
  }

 private:
  loop::Coroutine<int> serve(loop::EventLoop& lp, Endpoint listen, int index,
                             loop::Future<int> stop) {
    ConnectionSet connections;
    auto cfg = std::make_shared<ProxyConfig>(cfg_);  // this worker's: its loop, its connections
    cfg->lp = &lp;
    cfg->connections = connections;
    auto factory = [cfg] { return std::make_shared<ClientLeg>(cfg); };
    loop::ServerOptions opts;
    opts.reuse_port = workers_ > 1;
    if (!cfg->starttls) opts.ssl = cfg->client_ssl;  // STARTTLS upgrades later, in place
    std::shared_ptr<loop::Server> server;
    std::exception_ptr failed;
    try {
      if (listen.is_unix())
        server = co_await lp.create_unix_server(factory, listen.path, opts);
      else
        server = co_await lp.create_server(factory, listen.host, listen.port, opts);
    } catch (const std::exception&) {
      failed = std::current_exception();
    }
    if (failed) throw_listen_failure(listen, failed);
    // run_workers installed the signal handlers before this line scripts wait for.
    if (index == 0) print_listening(*server);
    std::vector<std::shared_ptr<loop::Server>> servers;
    servers.push_back(server);
    co_await serve_until(lp, stop, servers, connections);
    co_return 0;
  }

  [[noreturn]] static void throw_listen_failure(const Endpoint& ep, std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::system_error& se) {
      throw RuntimeFailure("cannot listen on " + ep.to_string() + ": " + se.code().message());
    } catch (const std::exception& ex) {
      throw RuntimeFailure("cannot listen on " + ep.to_string() + ": " + ex.what());
    }
  }

  std::string listen_, upstream_;
  ServerTlsOptions server_tls_;
  ClientTlsOptions upstream_tls_;
  bool starttls_ = false;
  int workers_ = 1;
  ProxyConfig cfg_;
};

}  // namespace

std::unique_ptr<Command> make_tls_proxy() {
  return std::make_unique<TlsProxy>();
}

}  // namespace loopctl

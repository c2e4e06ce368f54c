// loopctl tls-proxy: forwards bytes both ways between each accepted client and a new connection
// to the upstream. TLS on either leg: --cert/--key terminate TLS from clients, --upstream-tls
// speaks TLS to the upstream, --starttls accepts plaintext and upgrades the accepted connection
// in place with start_tls when the client sends the line STARTTLS.
#include <poll.h>

#include <cstdio>
#include <loop/sslproto.hpp>

#include "serve.hpp"
#include "starttls_line.hpp"

namespace loopctl {

namespace {

// --starttls-timeout's default: a client gets as long to send its line as it then gets for the
// TLS handshake (libloop's default handshake timeout, as asyncio's).
constexpr double kStartTlsTimeout = loop::SSLProtocol::default_handshake_timeout;

struct ProxyConfig {
  loop::EventLoop* lp = nullptr;
  Endpoint upstream;
  std::shared_ptr<loop::SSLContext> client_ssl;    // --cert/--key
  std::shared_ptr<loop::SSLContext> upstream_ssl;  // --upstream-tls
  std::string server_hostname;
  bool starttls = false;
  double starttls_timeout = kStartTlsTimeout;
  ConnectionSet connections;  // shares the worker's set
};

// When one side of a proxied connection is gone, the other may still deliver what it holds
// (its close() flushes first) but not for ever: its peer may have stopped reading, precisely
// because its own writes back to us were stalled. It gets the contract's shutdown grace, the
// bound loopctl already puts on connections that are slow to finish, and is then aborted
// (on --virtual-clock, as every grace period, it ends as soon as the loop would wait).
constexpr double kDrainGrace = kShutdownGrace;
// While flow control keeps a side from reading (the other side's peer does not read), the loop
// watches neither direction of its socket and a reset by its peer would go unnoticed until the
// other side moves. Its socket is checked for a pending error this often meanwhile.
constexpr double kPausedProbeInterval = 1.0;

// One side of a proxied connection. Flow control crosses over: when this side's transport is
// full, the other side stops reading, so a slow reader holds memory to the water marks.
class Leg : public loop::Protocol, public std::enable_shared_from_this<Leg> {
 public:
  explicit Leg(loop::EventLoop& lp) : lp_(lp) {}

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
    if (peer && peer->transport) peer->pause_for_peer();
  }
  void resume_writing() override {
    if (peer && peer->transport) peer->resume_for_peer();
  }
  // The other side is told: a reset (or any error) crosses over as an abort; a clean end lets
  // it deliver what it holds, within kDrainGrace. A side already closing on its own (EOF went
  // both ways through it) is left to finish: its peer is still there, reading.
  void connection_lost(std::exception_ptr exc) override {
    if (peer && peer->transport && !peer->transport->is_closing()) {
      if (exc)
        peer->transport->abort();
      else
        peer->close_within(kDrainGrace);
    }
    if (peer) peer->peer.reset();  // break the cycle
    transport = nullptr;
    peer.reset();
    if (drain_timer_) drain_timer_->cancel();
    if (probe_) probe_->cancel();
  }

  // close(), then abort() if the connection has not gone after `grace` seconds.
  void close_within(double grace) {
    transport->close();
    // Weak: this leg holds the timer's handle, a strong capture would be a cycle.
    std::weak_ptr<Leg> weak = weak_from_this();
    drain_timer_ = lp_.call_later(grace, [weak] {
      auto self = weak.lock();
      if (self && self->transport) self->transport->abort();
    });
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
    // Not if writing `pending` just filled the other side (its pause_writing paused us).
    if (transport && !paused_by_peer_) transport->resume_reading();
  }

 private:
  void pause_for_peer() {
    transport->pause_reading();
    paused_by_peer_ = true;
    // Not on --virtual-clock: the loop would jump from one probe to the next without waiting.
    if (!probe_ && !lp_.clock().is_virtual()) arm_probe();
  }
  void resume_for_peer() {
    paused_by_peer_ = false;
    transport->resume_reading();
  }
  void arm_probe() {
    std::weak_ptr<Leg> weak = weak_from_this();
    probe_ = lp_.call_later(kPausedProbeInterval, [weak] {
      auto self = weak.lock();
      if (!self) return;
      self->probe_.reset();
      if (!self->transport || !self->paused_by_peer_) return;
      if (self->socket_failed())
        self->drop();
      else
        self->arm_probe();
    });
  }
  // A reset (or another error) is pending on the socket: poll reports POLLERR until someone
  // reads SO_ERROR, which nobody does while nothing is read or written. A peer's plain EOF is
  // not an error: what it sent before still has to go through, so it waits for reading.
  bool socket_failed() const {
    auto fd = transport->extra<int>("socket");
    if (!fd) return false;
    pollfd p{*fd, 0, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLERR) != 0;
  }
  // Both sides at once, as connection_lost does for an error.
  void drop() {
    if (peer && peer->transport && !peer->transport->is_closing()) peer->transport->abort();
    transport->abort();
  }

  loop::EventLoop& lp_;
  bool paused_by_peer_ = false;  // reading paused because the other side's peer is full
  std::optional<loop::TimerHandle> drain_timer_;
  std::optional<loop::TimerHandle> probe_;
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

constexpr const char* kStartTlsTimeoutAnswer = "ERR timeout waiting for STARTTLS\r\n";

class ClientLeg final : public Leg {
 public:
  explicit ClientLeg(std::shared_ptr<const ProxyConfig> cfg)
      : Leg(*cfg->lp), cfg_(*cfg), cfg_owner_(std::move(cfg)) {}

  void connection_made(loop::BaseTransport& t) override {
    Leg::connection_made(t);
    cfg_.connections.add(&t);
    base_ = &t;
    auto peer_addr = t.extra<loop::SocketAddress>("peername");
    client_ = peer_addr ? peer_addr->to_string() : std::string("?");
    if (cfg_.starttls) {
      awaiting_line_ = true;  // nothing goes upstream before the upgrade
      // A client that never sends its line would hold a socket for ever.
      std::weak_ptr<Leg> weak = weak_from_this();
      line_timer_ = cfg_.lp->call_later(cfg_.starttls_timeout, [weak] {
        auto leg = weak.lock();
        if (!leg) return;
        auto self = std::static_pointer_cast<ClientLeg>(leg);
        if (self->awaiting_line_ && self->transport) self->refuse(kStartTlsTimeoutAnswer);
      });
    } else {
      task_ = cfg_.lp->create_task(connect_upstream(self()));
    }
  }
  void data_received(std::string_view data) override {
    if (!awaiting_line_) return Leg::data_received(data);
    auto verdict = line_.feed(data);
    if (verdict != StartTlsLine::Verdict::need_more && line_timer_) line_timer_->cancel();
    switch (verdict) {
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
    task_ = cfg_.lp->create_task(upgrade_then_connect(self()));
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
    if (line_timer_) line_timer_->cancel();
  }

 private:
  std::shared_ptr<ClientLeg> self() {
    return std::static_pointer_cast<ClientLeg>(shared_from_this());
  }

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
    auto factory = [lp = cfg.lp] { return std::make_shared<Leg>(*lp); };
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
        upstream->close_within(kDrainGrace);
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
  std::optional<loop::TimerHandle> line_timer_;     // --starttls-timeout
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
    app.add_option("--starttls-timeout", starttls_timeout_,
                   "With --starttls: seconds a client has to send its STARTTLS line; then it is "
                   "answered 'ERR timeout waiting for STARTTLS' and closed")
        ->default_val(kStartTlsTimeout)
        ->check(positive_number())
        ->needs("--starttls");
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
    cfg_.starttls_timeout = starttls_timeout_;
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
    if (failed)
      throw_listen_error(listen.to_string(), failed,
                         listen.is_unix() ? listen.path : std::string());
    // run_workers installed the signal handlers before this line scripts wait for.
    if (index == 0) print_listening(*server);
    std::vector<std::shared_ptr<loop::Server>> servers;
    servers.push_back(server);
    co_await serve_until(lp, stop, servers, connections);
    co_return 0;
  }

  std::string listen_, upstream_;
  ServerTlsOptions server_tls_;
  ClientTlsOptions upstream_tls_;
  bool starttls_ = false;
  double starttls_timeout_ = kStartTlsTimeout;
  int workers_ = 1;
  ProxyConfig cfg_;
};

}  // namespace

std::unique_ptr<Command> make_tls_proxy() {
  return std::make_unique<TlsProxy>();
}

}  // namespace loopctl

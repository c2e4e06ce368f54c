#include "serve.hpp"

#include <csignal>
#include <cstdio>
#include <system_error>

namespace loopctl {

void ConnectionSet::abort_all() {
  auto live = live_;  // abort() may call back into remove()
  for (auto* t : live) {
    if (auto* w = dynamic_cast<loop::WriteTransport*>(t))
      w->abort();
    else
      t->close();
  }
}

void print_listening(const loop::Server& server) {
  for (const auto& addr : server.sockets()) std::printf("listening on %s\n", addr.to_string().c_str());
  std::fflush(stdout);
}

void ServerTlsOptions::add_to(CLI::App& app) {
  auto* c = app.add_option("--cert", cert, "Speak TLS with this certificate (PEM; may hold the key)");
  auto* k = app.add_option("--key", key, "The certificate's private key (PEM)");
  k->needs(c);
}

std::shared_ptr<loop::SSLContext> ServerTlsOptions::context() const {
  if (cert.empty()) return nullptr;
  try {
    auto ctx = loop::SSLContext::create_default_context(loop::Purpose::client_auth);
    ctx->load_cert_chain(cert, key);
    return ctx;
  } catch (const std::exception& e) {
    throw RuntimeFailure(std::string("cannot load the TLS certificate: ") + e.what());
  }
}

void ClientTlsOptions::add_to(CLI::App& app, bool with_tls_flag, const std::string& prefix) {
  if (with_tls_flag) app.add_flag("--" + prefix + "tls", tls, "Speak TLS (verifying the server's certificate)");
  app.add_option("--" + prefix + "cafile", cafile,
                 "Trust the CAs in this PEM file instead of the system's store");
  app.add_flag("--" + prefix + "insecure", insecure,
               "Do not verify the server's certificate or name (says so on stderr)");
  app.add_option("--" + prefix + "server-hostname", server_hostname,
                 "The name to send (SNI) and to match the certificate against; default: the host");
}

std::shared_ptr<loop::SSLContext> ClientTlsOptions::context() const {
  if (!enabled()) return nullptr;
  try {
    auto ctx = loop::SSLContext::create_default_context(loop::Purpose::server_auth);
    if (!cafile.empty()) ctx->load_verify_locations(cafile);
    if (insecure) {
      ctx->set_check_hostname(false);
      ctx->set_verify_mode(loop::VerifyMode::cert_none);
      std::fprintf(stderr,
                   "loopctl: warning: --insecure: the server's certificate and name are NOT "
                   "verified\n");
    }
    return ctx;
  } catch (const std::exception& e) {
    throw RuntimeFailure(std::string("cannot set up TLS: ") + e.what());
  }
}

loop::Coroutine<int> serve_until_signal(loop::EventLoop& lp,
                                        std::vector<std::shared_ptr<loop::Server>> servers,
                                        ConnectionSet& connections, double grace) {
  auto stop = lp.create_future<int>();
  for (int sig : {SIGINT, SIGTERM}) {
    lp.add_signal_handler(sig, [stop, sig] {
      if (!stop.done()) stop.set_result(sig);
    });
  }
  int sig = co_await stop;
  // New connections are refused from now on.
  for (auto& s : servers) s->close();
  double deadline = lp.time() + grace;
  while (connections.size() > 0 && lp.time() < deadline) co_await loop::sleep(0.02);
  if (connections.size() > 0) {
    connections.abort_all();
    co_await loop::sleep(0);  // let connection_lost run
  }
  for (int s : {SIGINT, SIGTERM}) lp.remove_signal_handler(s);
  co_return sig;
}

std::string connect_error(const Endpoint& ep, const std::exception& e) {
  std::string why = e.what();
  if (auto* se = dynamic_cast<const std::system_error*>(&e)) why = se->code().message();
  return "cannot connect to " + ep.to_string() + ": " + why;
}

}  // namespace loopctl

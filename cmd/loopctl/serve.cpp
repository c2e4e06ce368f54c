#include "serve.hpp"

#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <thread>

namespace loopctl {

void ConnectionSet::abort_all() {
  auto live = *live_;  // abort() may call back into remove()
  for (auto* t : live) {
    if (auto* w = dynamic_cast<loop::WriteTransport*>(t))
      w->abort();
    else
      t->close();
  }
}

void print_listening(const loop::Server& server) {
  for (const auto& addr : server.sockets())
    std::printf("listening on %s\n", addr.to_string().c_str());
  flush_stdout();
}

void ServerTlsOptions::add_to(CLI::App& app) {
  auto* c = app.add_option(
      "--cert", cert,
      "Speak TLS with this certificate (PEM, may hold the key); handshake timeout 60 s");
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
  if (with_tls_flag)
    app.add_flag("--" + prefix + "tls", tls, "Speak TLS (verifying the server's certificate)");
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

loop::Future<int> stop_signal(loop::EventLoop& lp) {
  auto stop = lp.create_future<int>();
  for (int sig : {SIGINT, SIGTERM}) {
    lp.add_signal_handler(sig, [stop, sig] {
      if (!stop.done()) stop.set_result(sig);
    });
  }
  return stop;
}

loop::Coroutine<int> serve_until_signal(loop::EventLoop& lp,
                                        std::vector<std::shared_ptr<loop::Server>> servers,
                                        ConnectionSet& connections, double grace) {
  loop::Future<int> stop = stop_signal(lp);
  co_await serve_until(lp, stop, servers, connections, grace);
  co_return stop.result();
}

namespace {

// Whether a task of `lp` other than the one running is not done yet.
bool others_pending(loop::EventLoop& lp) {
  loop::TaskBase self = loop::current_task();
  for (const auto& t : loop::all_tasks(lp))
    if (!(t == self)) return true;
  return false;
}

}  // namespace

loop::Coroutine<void> serve_until(loop::EventLoop& lp, loop::Future<int> stop,
                                  std::vector<std::shared_ptr<loop::Server>> servers,
                                  ConnectionSet& connections, double grace) {
  co_await stop;
  // New connections are refused from now on.
  for (auto& s : servers) s->close();
  double deadline = lp.time() + grace;
  while (connections.size() > 0 && lp.time() < deadline) co_await loop::sleep(0.02);
  if (connections.size() > 0) {
    connections.abort_all();
    // connection_lost runs next and cancels the connections' tasks; a cancelled task may need
    // a few iterations to unwind (a TLS transfer waits for its buffers to go). Bounded: a task
    // that ignores its cancellation is reported at exit as it should be.
    double until = lp.time() + kCancelledTasksGrace;
    co_await loop::sleep(0);
    while (others_pending(lp) && lp.time() < until) co_await loop::sleep(0.01);
  }
}

int run_workers(loop::EventLoop& lp, int workers, const Worker& worker) {
  struct Slot {
    std::unique_ptr<loop::EventLoop> loop;
    std::thread thread;
    int code = 0;
    std::string error;
  };
  std::vector<Slot> slots(static_cast<std::size_t>(std::max(0, workers - 1)));
  loop::Future<int> main_stop = stop_signal(lp);
  // Other workers are started once worker 0 listens (it may have chosen the port); their stop
  // futures are completed from this thread with call_soon_threadsafe.
  std::vector<std::function<void(int)>> stoppers;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    slots[i].loop = std::make_unique<loop::EventLoop>();
    slots[i].loop->set_debug(lp.get_debug());
    slots[i].loop->slow_callback_duration = lp.slow_callback_duration;
    slots[i].loop->set_exception_handler(lp.get_exception_handler());
  }
  // --trace: every worker's loop writes to the one sink, its records tagged "loop": N.
  std::shared_ptr<loop::Tracer> own_tracer = lp.shared_tracer();
  if (own_tracer && !slots.empty()) {
    auto shared = loop::share_trace_sink(own_tracer);
    lp.set_tracer(loop::make_loop_tracer(shared, 0, true));  // closes after the workers'
    for (std::size_t i = 0; i < slots.size(); ++i)
      slots[i].loop->set_tracer(loop::make_loop_tracer(shared, static_cast<int>(i) + 1));
  }
  // Signals are handled by this thread only.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  for (std::size_t i = 0; i < slots.size(); ++i) {
    Slot& slot = slots[i];
    loop::EventLoop* wl = slot.loop.get();
    auto stop = wl->create_future<int>();
    stoppers.push_back([wl, stop](int sig) {
      try {
        wl->call_soon_threadsafe([stop, sig] {
          if (!stop.done()) stop.set_result(sig);
        });
      } catch (const std::runtime_error&) {
        // That worker already finished and closed its loop.
      }
    });
    slot.thread = std::thread([&slot, wl, stop, &worker, i] {
      try {
        slot.code = wl->run_until_complete(worker(static_cast<int>(i) + 1, *wl, stop));
      } catch (const std::exception& e) {
        slot.code = 1;
        slot.error = e.what();
      }
      wl->close();
    });
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  main_stop.add_done_callback([&stoppers](loop::Future<int> f) {
    for (auto& s : stoppers) s(f.result());
  });
  int code = 0;
  std::exception_ptr failed;
  try {
    code = lp.run_until_complete(worker(0, lp, main_stop));
  } catch (...) {
    failed = std::current_exception();
  }
  // Whatever happened to worker 0, the others stop and are joined before we return.
  for (auto& s : stoppers) s(SIGTERM);
  for (auto& slot : slots) slot.thread.join();
  if (failed) std::rethrow_exception(failed);
  for (auto& slot : slots) {
    if (!slot.error.empty()) print_error(slot.error);
    if (code == 0) code = slot.code;
  }
  return code;
}

int pick_shared_port(const std::string& host, int socktype) {
  addrinfo hints{};
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  hints.ai_socktype = socktype;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), "0", &hints, &res);
  if (rc != 0) throw RuntimeFailure("cannot resolve " + host + ": " + ::gai_strerror(rc));
  int port = -1;
  int fd = ::socket(res->ai_family, socktype | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0 && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0 &&
      ::bind(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    port = loop::SocketAddress(reinterpret_cast<sockaddr*>(&ss), len).port();
  }
  int err = errno;
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(res);
  if (port < 0)
    throw RuntimeFailure("cannot listen on " +
                         Endpoint{Endpoint::Kind::tcp, host, 0, {}}.to_string() + ": " +
                         std::strerror(err));
  return port;
}

void throw_listen_error(const std::string& where, std::exception_ptr failed,
                        const std::string& unix_path) {
  try {
    std::rethrow_exception(failed);
  } catch (const std::system_error& e) {
    struct stat st;
    if (e.code() == std::errc::address_in_use && !unix_path.empty() && unix_path[0] != '@' &&
        ::lstat(unix_path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
      throw RuntimeFailure("cannot listen on " + where + ": " + unix_path +
                           " exists and is not a socket");
    throw RuntimeFailure("cannot listen on " + where + ": " + e.code().message());
  } catch (const std::exception& e) {
    throw RuntimeFailure("cannot listen on " + where + ": " + e.what());
  }
}

std::string connect_error(const Endpoint& ep, const std::exception& e) {
  std::string why = e.what();
  if (auto* se = dynamic_cast<const std::system_error*>(&e)) why = se->code().message();
  return "cannot connect to " + ep.to_string() + ": " + why;
}

std::string describe_bad_echo(int index, const std::string& sent, const std::string& echo) {
  std::string which = "echo " + std::to_string(index);
  if (echo.size() > sent.size() && echo.compare(0, sent.size(), sent) == 0)
    return which + " came back with " + std::to_string(echo.size() - sent.size()) +
           " bytes more than the message sent";
  return which + " differs from the message sent";
}

void throw_echo_mismatches(int mismatches, int count, const std::string& first) {
  throw RuntimeFailure(std::to_string(mismatches) + " of " + std::to_string(count) +
                       " echoes did not match: " + first);
}

std::string timeouts_virtual_clock_conflict(const std::string& what) {
  return what + ": its timeouts would expire before real network I/O completes";
}

std::string tls_virtual_clock_conflict(const std::string& what) {
  return what +
         " over TLS: its TLS handshake timeout would expire before real network I/O "
         "completes";
}

}  // namespace loopctl

// What every loopctl server shares: the `listening on` lines, the connections it holds, TLS
// options, and the shutdown the contract fixes (SIGINT/SIGTERM: stop listening at once, let
// connections finish for a grace period of at most 5 s, then close them, exit 0).
#pragma once

#include <sys/socket.h>

#include <functional>
#include <loop/loop.hpp>
#include <loop/ssl.hpp>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "command.hpp"
#include "endpoint.hpp"

namespace loopctl {

/// The connections a server holds, so that shutdown can wait for them and then close them.
/// Copies share one set: each protocol keeps a copy, so a connection_lost that runs after the
/// server's coroutine has ended still finds the set alive.
class ConnectionSet {
 public:
  void add(loop::BaseTransport* t) const { live_->insert(t); }
  void remove(loop::BaseTransport* t) const { live_->erase(t); }
  std::size_t size() const { return live_->size(); }
  /// Closes every connection at once (buffered data is dropped).
  void abort_all();

 private:
  std::shared_ptr<std::set<loop::BaseTransport*>> live_ =
      std::make_shared<std::set<loop::BaseTransport*>>();
};

/// Prints `listening on ADDR` for each socket of `server` on stdout, flushed at once.
void print_listening(const loop::Server& server);

/// The TLS server options (--cert/--key), shared by the servers that speak TLS.
struct ServerTlsOptions {
  std::string cert;
  std::string key;
  void add_to(CLI::App& app);
  /// A server context, or null when neither option is given; a missing or bad file is a
  /// RuntimeFailure naming it.
  std::shared_ptr<loop::SSLContext> context() const;
};

/// The TLS client options (--tls, --cafile, --insecure, --server-hostname).
struct ClientTlsOptions {
  bool tls = false;
  std::string cafile;
  bool insecure = false;
  std::string server_hostname;
  void add_to(CLI::App& app, bool with_tls_flag = true, const std::string& prefix = "");
  bool enabled() const { return tls || !cafile.empty() || insecure || !server_hostname.empty(); }
  /// A client context (null when TLS is off); --insecure says on stderr what it turns off.
  std::shared_ptr<loop::SSLContext> context() const;
};

/// The contract's shutdown grace: how long open connections may finish after SIGINT/SIGTERM.
inline constexpr double kShutdownGrace = 5.0;
/// After the grace, how long the tasks of the connections shutdown aborted get to unwind.
inline constexpr double kCancelledTasksGrace = 1.0;

/// Waits until `stop` is done, then shuts the servers down as the contract says: close the
/// listening sockets at once, let connections finish for `grace` seconds, then abort them and
/// give the tasks their connection_lost cancelled up to kCancelledTasksGrace to unwind (a task
/// still pending when the loop closes is reported as destroyed while pending).
loop::Coroutine<void> serve_until(loop::EventLoop& lp, loop::Future<int> stop,
                                  std::vector<std::shared_ptr<loop::Server>> servers,
                                  ConnectionSet& connections, double grace = kShutdownGrace);

/// A future that SIGINT or SIGTERM completes with the signal's number.
loop::Future<int> stop_signal(loop::EventLoop& lp);

/// serve_until(stop_signal()); returns the signal that stopped it. Its handlers go in when it
/// is first awaited: a server that prints its `listening on` line first should call
/// stop_signal() before printing and serve_until() after.
loop::Coroutine<int> serve_until_signal(loop::EventLoop& lp,
                                        std::vector<std::shared_ptr<loop::Server>> servers,
                                        ConnectionSet& connections, double grace = kShutdownGrace);

/// --workers N: runs `worker(index, lp, stop)` on N loops, worker 0 on `lp` in this thread and
/// the others each on its own thread and loop (sharing the port through SO_REUSEPORT); SIGINT or
/// SIGTERM, caught here, completes every worker's `stop`. Each worker returns an exit code; the
/// first non-zero one is returned.
using Worker =
    std::function<loop::Coroutine<int>(int index, loop::EventLoop& lp, loop::Future<int> stop)>;
int run_workers(loop::EventLoop& lp, int workers, const Worker& worker);

/// A free port (TCP, or UDP with SOCK_DGRAM) on `host` that several SO_REUSEPORT listeners can
/// share (for --workers with --port 0: the kernel's choice must be made once, before the workers
/// bind).
int pick_shared_port(const std::string& host, int socktype = SOCK_STREAM);

/// Throws RuntimeFailure "cannot listen on WHERE: why" for what create_server or
/// create_unix_server threw. With `unix_path` (a filesystem path, not @abstract) that exists
/// and is not a socket, the reason says so instead of bind's "Address already in use".
[[noreturn]] void throw_listen_error(const std::string& where, std::exception_ptr failed,
                                     const std::string& unix_path = {});

/// "cannot connect to EP: reason" from whatever create_connection threw.
std::string connect_error(const Endpoint& ep, const std::exception& e);

/// How echo `index` (from 1), everything that came back for `sent`, differs from it, for the
/// error line: "echo 2 differs from the message sent", "echo 1 came back with 5 bytes more than
/// the message sent".
std::string describe_bad_echo(int index, const std::string& sent, const std::string& echo);

/// "M of N echoes did not match: <first>", `first` from describe_bad_echo (exit 1).
[[noreturn]] void throw_echo_mismatches(int mismatches, int count, const std::string& first);

/// Command::virtual_clock_conflict for `what` (a subcommand) whose timeouts bound real network
/// I/O: simulated time reaches them while the peer's answer is still on its way.
std::string timeouts_virtual_clock_conflict(const std::string& what);
/// The same for `what` speaking TLS: its handshake timeout runs on the loop's clock.
std::string tls_virtual_clock_conflict(const std::string& what);

}  // namespace loopctl

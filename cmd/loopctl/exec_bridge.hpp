// --exec CMD (servers) and `loopctl exec` (a client): one stream connection joined to one
// child run by "/bin/sh -c CMD" (subprocess_shell), as `ncat -e/-c` and socat's EXEC: do. The
// connection's bytes go to the child's stdin, the child's stdout comes back, its stderr stays
// ours. The peer's EOF closes the child's stdin; the child's stdout EOF closes the connection
// once flushed; a peer that goes away gets its child terminated (SIGTERM, SIGKILL later).
#pragma once

#include <functional>
#include <loop/loop.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "serve.hpp"

namespace loopctl {

class ExecBridge;

/// The bridges of one loop that are not done (copies share one set), so that a server's
/// shutdown can terminate their children and wait until each one is reaped.
class BridgeSet {
 public:
  void add(const std::shared_ptr<ExecBridge>& bridge) const { (*live_)[bridge.get()] = bridge; }
  void remove(const ExecBridge* bridge) const { live_->erase(bridge); }
  std::size_t size() const { return live_->size(); }
  /// Terminates every child still running (SIGTERM now, SIGKILL if it lingers).
  void terminate_all() const;

 private:
  std::shared_ptr<std::map<const ExecBridge*, std::shared_ptr<ExecBridge>>> live_ =
      std::make_shared<std::map<const ExecBridge*, std::shared_ptr<ExecBridge>>>();
};

/// One connection joined to one child. Give socket_protocol() to create_server's factory or
/// to create_connection: the child is spawned when the connection is made.
class ExecBridge : public std::enable_shared_from_this<ExecBridge> {
 public:
  /// Seconds between the SIGTERM of terminate_child() and a SIGKILL.
  static constexpr double kill_after = 2.0;

  ExecBridge(loop::EventLoop& lp, std::string command, ConnectionSet connections = {},
             BridgeSet bridges = {});

  /// The connection's protocol; call once.
  std::shared_ptr<loop::Protocol> socket_protocol();

  /// Called once, when the child was reaped (and its pipes are closed) and the connection is
  /// closed: the child's returncode (-N: killed by signal N), nullopt if it never started.
  std::function<void(std::optional<int>)> on_done;

  /// SIGTERM to the child (now, or as soon as it is spawned), SIGKILL after kill_after s.
  /// Its output keeps flowing to the connection until its stdout closes.
  void terminate_child();

  /// Why the child could not be started ("" if it was).
  const std::string& spawn_error() const { return spawn_error_; }
  /// The child's pid, -1 before it was spawned.
  int pid() const { return pid_; }

  // ---- The two protocols' events (exec_bridge.cpp's SocketSide and ChildSide) ----
  void socket_made(loop::BaseTransport& t);
  void socket_data(std::string_view data);
  void socket_eof();
  void socket_full(bool full);
  void socket_lost();
  void child_made(loop::BaseTransport& t);
  void child_output(std::string_view data);
  void child_pipe_lost(int fd);
  void child_exited();
  void stdin_full(bool full);
  void child_lost();

 private:
  static loop::Coroutine<void> spawn(std::shared_ptr<ExecBridge> self);
  void spawn_failed(std::exception_ptr failed);
  void abandon_child();
  void kill_child();
  void update_socket_reading();
  void maybe_finish_child();
  void maybe_done();

  loop::EventLoop& lp_;
  std::string command_;
  ConnectionSet connections_;
  BridgeSet bridges_;
  std::optional<loop::Task<void>> spawn_task_;  // its frame (and `self`) go when it ends

  loop::Transport* socket_ = nullptr;  // until the connection is lost
  loop::BaseTransport* socket_base_ = nullptr;
  bool socket_reading_ = true;
  bool socket_is_full_ = false;  // the connection's write buffer is over its high-water mark
  bool closed_by_us_ = false;    // we closed the connection (the child's stdout ended)
  bool socket_done_ = false;     // its connection_lost ran
  std::string pending_;          // what the peer sent before the child was ready
  bool eof_pending_ = false;     // ... and its EOF

  loop::SubprocessTransport* child_ = nullptr;  // from connection_made to connection_lost
  loop::WriteTransport* stdin_ = nullptr;       // until the stdin pipe is lost
  loop::ReadTransport* stdout_ = nullptr;       // until the stdout pipe is lost
  int pid_ = -1;
  bool child_ready_ = false;
  bool spawn_done_ = false;  // spawned (or failed): nothing more will come from spawn()
  bool stdin_is_full_ = false;
  bool stdout_ended_ = false;
  bool exited_ = false;
  bool child_done_ = false;  // the subprocess protocol's connection_lost ran
  bool terminate_requested_ = false;
  bool terminating_ = false;
  std::optional<loop::TimerHandle> kill_timer_;
  std::optional<int> returncode_;
  std::string spawn_error_;
  bool done_ = false;
};

/// A server's protocol factory for --exec CMD: each connection gets its own bridge and child.
std::function<std::shared_ptr<loop::Protocol>()> exec_protocol_factory(loop::EventLoop& lp,
                                                                       std::string command,
                                                                       ConnectionSet connections,
                                                                       BridgeSet bridges);

/// At shutdown: terminates every child of `bridges` and waits, at most `timeout` seconds, until
/// each one is reaped and its connection closed.
loop::Coroutine<void> reap_children(loop::EventLoop& lp, BridgeSet bridges, double timeout = 5.0);

/// A returncode as a shell's exit status: N for exit(N), 128+N for a death by signal N.
int exit_status(int returncode);

}  // namespace loopctl

#include "exec_bridge.hpp"

#include <csignal>
#include <cstdio>
#include <system_error>

namespace loopctl {

namespace {

// The connection's side: every event goes to the bridge.
class SocketSide final : public loop::Protocol {
 public:
  explicit SocketSide(std::shared_ptr<ExecBridge> bridge) : bridge_(std::move(bridge)) {}
  void connection_made(loop::BaseTransport& t) override {
    if (bridge_) bridge_->socket_made(t);
  }
  void data_received(std::string_view data) override {
    if (bridge_) bridge_->socket_data(data);
  }
  bool eof_received() override {
    if (bridge_) bridge_->socket_eof();
    return true;  // keep writing the child's output back (half-close)
  }
  void pause_writing() override {
    if (bridge_) bridge_->socket_full(true);
  }
  void resume_writing() override {
    if (bridge_) bridge_->socket_full(false);
  }
  void connection_lost(std::exception_ptr) override {
    // The transport keeps us; the bridge need not live on (nothing comes after this).
    if (auto bridge = std::move(bridge_)) bridge->socket_lost();
  }

 private:
  std::shared_ptr<ExecBridge> bridge_;
};

// The child's side (its stdin and stdout pipes, its exit).
class ChildSide final : public loop::SubprocessProtocol {
 public:
  explicit ChildSide(std::shared_ptr<ExecBridge> bridge) : bridge_(std::move(bridge)) {}
  void connection_made(loop::BaseTransport& t) override {
    if (bridge_) bridge_->child_made(t);
  }
  void pipe_data_received(int fd, std::string_view data) override {
    if (bridge_ && fd == 1) bridge_->child_output(data);
  }
  void pipe_connection_lost(int fd, std::exception_ptr) override {
    if (bridge_) bridge_->child_pipe_lost(fd);
  }
  void process_exited() override {
    if (bridge_) bridge_->child_exited();
  }
  // The stdin pipe's flow control.
  void pause_writing() override {
    if (bridge_) bridge_->stdin_full(true);
  }
  void resume_writing() override {
    if (bridge_) bridge_->stdin_full(false);
  }
  void connection_lost(std::exception_ptr) override {
    if (auto bridge = std::move(bridge_)) bridge->child_lost();
  }

 private:
  std::shared_ptr<ExecBridge> bridge_;
};

// Outside the coroutine: GCC 12 miscompiles string literals and temporaries in coroutine
// bodies. The child's stderr stays ours, as ncat's does.
loop::SubprocessOptions child_options() {
  loop::SubprocessOptions opts;
  opts.std_in = loop::PIPE;
  opts.std_out = loop::PIPE;
  opts.std_err = loop::INHERIT;
  return opts;
}

std::function<std::shared_ptr<ChildSide>()> child_factory(std::shared_ptr<ExecBridge> bridge) {
  return [bridge] { return std::make_shared<ChildSide>(bridge); };
}

std::string describe(std::exception_ptr failed) {
  try {
    std::rethrow_exception(failed);
  } catch (const std::system_error& e) {
    return e.code().message();
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

}  // namespace

void BridgeSet::terminate_all() const {
  auto live = *live_;  // terminate_child may end a bridge, which removes it
  for (auto& [raw, bridge] : live) bridge->terminate_child();
}

ExecBridge::ExecBridge(loop::EventLoop& lp, std::string command, ConnectionSet connections,
                       BridgeSet bridges)
    : lp_(lp),
      command_(std::move(command)),
      connections_(std::move(connections)),
      bridges_(std::move(bridges)) {}

std::shared_ptr<loop::Protocol> ExecBridge::socket_protocol() {
  return std::make_shared<SocketSide>(shared_from_this());
}

// ---- Starting ------------------------------------------------------------------------------

void ExecBridge::socket_made(loop::BaseTransport& t) {
  socket_ = dynamic_cast<loop::Transport*>(&t);
  socket_base_ = &t;
  connections_.add(&t);
  bridges_.add(shared_from_this());
  // Nothing is read until the child can take it.
  update_socket_reading();
  spawn_task_ = lp_.create_task(spawn(shared_from_this()));
}

loop::Coroutine<void> ExecBridge::spawn(std::shared_ptr<ExecBridge> self) {
  auto factory = child_factory(self);
  std::string command = self->command_;
  loop::SubprocessOptions options = child_options();
  std::exception_ptr failed;
  try {
    co_await self->lp_.subprocess_shell(factory, command, options);
  } catch (...) {  // CancelledError too: the loop is going away
    failed = std::current_exception();
  }
  self->spawn_done_ = true;
  if (failed) self->spawn_failed(failed);
}

void ExecBridge::spawn_failed(std::exception_ptr failed) {
  spawn_error_ = "cannot run '" + command_ + "': " + describe(failed);
  // A server goes on serving others; `loopctl exec` reports it as its error.
  if (!on_done) {
    std::fflush(stdout);
    std::fprintf(stderr, "loopctl: %s\n", spawn_error_.c_str());
    std::fflush(stderr);
  }
  if (socket_ && !socket_->is_closing()) {
    closed_by_us_ = true;
    socket_->close();
  }
  maybe_done();
}

void ExecBridge::child_made(loop::BaseTransport& t) {
  child_ = dynamic_cast<loop::SubprocessTransport*>(&t);
  pid_ = child_->get_pid();
  stdin_ = dynamic_cast<loop::WriteTransport*>(child_->get_pipe_transport(0));
  stdout_ = dynamic_cast<loop::ReadTransport*>(child_->get_pipe_transport(1));
  child_ready_ = true;
  if (!socket_) {  // the peer left while the child was being spawned
    abandon_child();
    return;
  }
  if (stdin_ && !pending_.empty()) stdin_->write(pending_);
  pending_.clear();
  if (eof_pending_) socket_eof();
  if (socket_is_full_ && stdout_) stdout_->pause_reading();
  update_socket_reading();
  if (terminate_requested_) terminate_child();
}

// ---- The connection's events ---------------------------------------------------------------

void ExecBridge::socket_data(std::string_view data) {
  if (!child_ready_) {
    pending_.append(data);
    return;
  }
  // Once the child closed its stdin (or exited), what the peer sends goes nowhere.
  if (stdin_ && !stdin_->is_closing()) stdin_->write(data);
}

void ExecBridge::socket_eof() {
  if (!child_ready_) {
    eof_pending_ = true;
    return;
  }
  eof_pending_ = false;
  if (stdin_ && !stdin_->is_closing()) stdin_->write_eof();
}

void ExecBridge::socket_full(bool full) {
  // The peer reads slower than the child writes: stop reading the child's stdout, so that
  // the child blocks on its pipe instead of our memory growing.
  socket_is_full_ = full;
  if (!stdout_) return;
  if (full)
    stdout_->pause_reading();
  else
    stdout_->resume_reading();
}

void ExecBridge::socket_lost() {
  connections_.remove(socket_base_);
  socket_ = nullptr;
  socket_base_ = nullptr;
  socket_done_ = true;
  // The peer went away (reset, or closed before the child finished): nobody is left to
  // talk to, so the child is terminated. After our own close the child just runs to its end.
  if (!closed_by_us_ && child_ready_) abandon_child();
  maybe_finish_child();
  maybe_done();
}

void ExecBridge::update_socket_reading() {
  if (!socket_ || socket_->is_closing()) return;
  bool want = child_ready_ && !stdin_is_full_;
  if (want == socket_reading_) return;
  socket_reading_ = want;
  if (want)
    socket_->resume_reading();
  else
    socket_->pause_reading();
}

// ---- The child's events --------------------------------------------------------------------

void ExecBridge::child_output(std::string_view data) {
  if (socket_ && !socket_->is_closing()) socket_->write(data);
}

void ExecBridge::stdin_full(bool full) {
  // The child reads slower than the peer sends: stop reading the connection.
  stdin_is_full_ = full;
  update_socket_reading();
}

void ExecBridge::child_pipe_lost(int fd) {
  if (fd == 0) {
    stdin_ = nullptr;
    stdin_is_full_ = false;  // its buffer went with it
    update_socket_reading();
  } else if (fd == 1) {
    stdout_ = nullptr;
    stdout_ended_ = true;
    // The child's output is complete: flush it to the peer, then close.
    if (socket_ && !socket_->is_closing()) {
      closed_by_us_ = true;
      socket_->close();
    }
  }
  maybe_finish_child();
}

void ExecBridge::child_exited() {
  exited_ = true;
  if (child_) returncode_ = child_->get_returncode();
  if (kill_timer_) kill_timer_->cancel();
  kill_timer_.reset();
  maybe_finish_child();
}

void ExecBridge::maybe_finish_child() {
  // Exited, and either its output ended or nobody is left to read it: close the pipes that
  // may still be open (a grandchild may hold them), so that connection_lost comes.
  if (child_ && exited_ && (stdout_ended_ || socket_done_) && !child_->is_closing())
    child_->close();
}

void ExecBridge::child_lost() {
  child_done_ = true;
  child_ = nullptr;
  stdin_ = nullptr;
  stdout_ = nullptr;
  maybe_done();
}

// ---- Ending --------------------------------------------------------------------------------

void ExecBridge::terminate_child() {
  terminate_requested_ = true;
  if (!child_ || exited_ || terminating_) return;
  terminating_ = true;
  try {
    child_->terminate();
  } catch (const std::exception&) {
    return;  // already gone
  }
  std::weak_ptr<ExecBridge> weak = shared_from_this();
  kill_timer_ = lp_.call_later(kill_after, [weak] {
    if (auto self = weak.lock()) self->kill_child();
  });
}

void ExecBridge::kill_child() {
  kill_timer_.reset();
  if (!child_ || exited_) return;
  try {
    child_->kill();
  } catch (const std::exception&) {
  }
}

void ExecBridge::abandon_child() {
  terminate_child();
  // Its pipes too: a grandchild holding them then sees EOF on stdin and EPIPE on stdout.
  if (auto* in = stdin_) in->abort();
  if (auto* out = stdout_) out->close();
  maybe_finish_child();
}

void ExecBridge::maybe_done() {
  if (done_ || !socket_done_) return;
  if (!child_done_ && !(spawn_done_ && !child_ready_)) return;
  done_ = true;
  auto keep = shared_from_this();  // remove() may drop the last reference
  bridges_.remove(this);
  if (on_done) on_done(child_ready_ ? returncode_ : std::nullopt);
}

// ---- For the commands ----------------------------------------------------------------------

std::function<std::shared_ptr<loop::Protocol>()> exec_protocol_factory(loop::EventLoop& lp,
                                                                       std::string command,
                                                                       ConnectionSet connections,
                                                                       BridgeSet bridges) {
  return [&lp, command, connections, bridges] {
    auto bridge = std::make_shared<ExecBridge>(lp, command, connections, bridges);
    return bridge->socket_protocol();
  };
}

loop::Coroutine<void> reap_children(loop::EventLoop& lp, BridgeSet bridges, double timeout) {
  bridges.terminate_all();
  double deadline = lp.time() + timeout;
  while (bridges.size() > 0 && lp.time() < deadline) co_await loop::sleep(0.02);
}

int exit_status(int returncode) {
  if (returncode < 0) return 128 + (-returncode);
  return returncode & 0xff;
}

}  // namespace loopctl

// SubprocessTransportImpl: asyncio's BaseSubprocessTransport. Callback order as asyncio's:
// connection_made once every pipe is connected (calls made before that are queued behind
// it), each pipe event and process_exited one call_soon after the transport hears of it,
// and connection_lost only once the process exited AND every pipe is closed.
#include "subprocess/subprocess_transport.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "loop/loop.hpp"
#include "transports/pipe_transport.hpp"
#include "transports/transport_support.hpp"

namespace loop::detail {

// ---- The pipes' protocol ---------------------------------------------------------------------

void SubprocessPipeProto::connection_lost(std::exception_ptr exc) {
  disconnected = true;
  if (auto* p = proc) {
    proc = nullptr;
    p->pipe_connection_lost(fd, exc);
  }
}

void SubprocessPipeProto::data_received(std::string_view data) {
  if (proc) proc->pipe_data_received(fd, data);
}

void SubprocessPipeProto::pause_writing() {
  if (proc) proc->protocol().call_if_set([](SubprocessProtocol& p) { p.pause_writing(); });
}

void SubprocessPipeProto::resume_writing() {
  if (proc) proc->protocol().call_if_set([](SubprocessProtocol& p) { p.resume_writing(); });
}

// ---- Starting ------------------------------------------------------------------------------

SubprocessTransportImpl::SubprocessTransportImpl(EventLoop& loop,
                                                 std::shared_ptr<SubprocessProtocol> protocol,
                                                 const std::vector<std::string>& argv,
                                                 std::string display_name,
                                                 const SubprocessOptions& options)
    : loop_(loop), protocol_(std::move(protocol)), program_(std::move(display_name)) {
  SpawnedChild child = spawn_child(argv, options);
  pid_ = child.pid;
  int fds[3] = {child.stdin_fd, child.stdout_fd, child.stderr_fd};
  for (int i = 0; i < 3; ++i) {
    if (fds[i] < 0) continue;
    auto proto = std::make_shared<SubprocessPipeProto>(this, i);
    proto->raw_fd = fds[i];
    pipes_[i] = std::move(proto);
  }
  if (loop_.tracer())
    loop_.trace_flat("subprocess_started", {{"pid", pid_}, {"program", program_}});
}

SubprocessTransportImpl::~SubprocessTransportImpl() {
  if (registered()) loop_.unregister_resource(this);
  for (auto& [fd, proto] : pipes_) {
    proto->proc = nullptr;
    if (proto->raw_fd >= 0) ::close(proto->raw_fd);
    proto->raw_fd = -1;
  }
  if (watcher_) {
    // Dropped while the child runs (the loop went away): kill it as close() would, and leave
    // the reaping to the watcher's thread.
    if (!closed_ && !watcher_->exited()) ::kill(pid_, SIGKILL);
    watcher_->stop();
  }
}

void SubprocessTransportImpl::start(Future<void> waiter) {
  self_ = shared_from_this();
  loop_.register_resource(this);
  loop_.create_task(connect_pipes(waiter));
  std::weak_ptr<SubprocessTransportImpl> weak = self_;
  watcher_ = ChildWatcher::watch(loop_, pid_, [weak](int returncode) {
    if (auto self = weak.lock()) self->process_exited(returncode);
  });
}

Coroutine<void> SubprocessTransportImpl::connect_pipes(Future<void> waiter) {
  auto self = shared_from_this();
  std::exception_ptr failed;
  try {
    for (auto& [fd, proto] : pipes_) {
      if (proto->raw_fd < 0) throw std::system_error(EBADF, std::generic_category(), "pipe closed");
      int raw = std::exchange(proto->raw_fd, -1);  // the pipe transport owns it from here
      auto factory = [p = proto]() -> std::shared_ptr<Protocol> { return p; };
      std::shared_ptr<BaseTransport> t;
      if (fd == 0)
        t = co_await detail::connect_write_pipe(loop_, factory, raw);
      else
        t = co_await detail::connect_read_pipe(loop_, factory, raw);
      proto->pipe_owner = std::move(t);
    }
    loop_.call_soon(named("SubprocessProtocol.connection_made", [self] {
      self->protocol_.call_if_set([&](SubprocessProtocol& p) { p.connection_made(*self); });
    }));
    for (auto& [name, cb] : *pending_calls_) loop_.call_soon(named(name, std::move(cb)));
    pending_calls_.reset();
  } catch (...) {
    failed = std::current_exception();
  }
  if (failed) {
    // The protocol never got connection_made: it gets nothing else either.
    start_failed_ = true;
    pending_calls_->clear();
  }
  if (!waiter.done()) {
    if (failed)
      waiter.set_exception(failed);
    else
      waiter.set_result();
  }
}

// ---- Events from the pipes and the watcher -------------------------------------------------

void SubprocessTransportImpl::call(const char* name, std::function<void()> cb) {
  if (start_failed_) return;
  if (pending_calls_)
    pending_calls_->emplace_back(name, std::move(cb));
  else
    loop_.call_soon(named(name, std::move(cb)));
}

void SubprocessTransportImpl::pipe_connection_lost(int fd, std::exception_ptr exc) {
  auto self = shared_from_this();
  call("SubprocessProtocol.pipe_connection_lost", [self, fd, exc] {
    self->protocol_.call_if_set([&](SubprocessProtocol& p) { p.pipe_connection_lost(fd, exc); });
  });
  try_finish();
}

void SubprocessTransportImpl::pipe_data_received(int fd, std::string_view data) {
  auto self = shared_from_this();
  call("SubprocessProtocol.pipe_data_received", [self, fd, d = std::string(data)] {
    if (self->loop_.tracer())
      self->loop_.trace_flat("pipe_data_received",
                             {{"pid", self->pid_}, {"fd", fd}, {"bytes", d.size()}});
    self->protocol_.call_if_set([&](SubprocessProtocol& p) { p.pipe_data_received(fd, d); });
  });
}

void SubprocessTransportImpl::process_exited(int returncode) {
  if (returncode_) return;
  returncode_ = returncode;
  if (loop_.tracer())
    loop_.trace_flat("subprocess_exited", {{"pid", pid_}, {"returncode", returncode}});
  auto self = shared_from_this();
  call("SubprocessProtocol.process_exited",
       [self] { self->protocol_.call_if_set([](SubprocessProtocol& p) { p.process_exited(); }); });
  try_finish();
}

void SubprocessTransportImpl::try_finish() {
  if (finished_ || !returncode_) return;
  for (auto& [fd, proto] : pipes_)
    if (!proto->disconnected) return;
  finished_ = true;
  auto self = shared_from_this();
  if (start_failed_) {  // only wait() is left to wake up
    loop_.call_soon(named("SubprocessTransport._call_connection_lost", [self] {
      self->protocol_.reset();
      self->call_connection_lost(nullptr);
    }));
    return;
  }
  call("SubprocessTransport._call_connection_lost",
       [self] { self->call_connection_lost(nullptr); });
}

void SubprocessTransportImpl::call_connection_lost(std::exception_ptr exc) {
  struct Finally {
    SubprocessTransportImpl& t;
    ~Finally() {
      // Wake up the futures waiting in wait().
      for (auto& w : t.exit_waiters_)
        if (!w.done()) w.set_result(*t.returncode_);
      t.exit_waiters_.clear();
      t.lost_ = true;
      t.loop_.unregister_resource(&t);
      t.self_.reset();  // the caller's lambda still holds a reference
    }
  } finally{*this};
  protocol_.call_if_set([&](SubprocessProtocol& p) { p.connection_lost(exc); });
}

Future<int> SubprocessTransportImpl::wait() {
  auto f = loop_.create_future<int>();
  if (returncode_)
    f.set_result(*returncode_);
  else
    exit_waiters_.push_back(f);
  return f;
}

// ---- The public methods --------------------------------------------------------------------

void SubprocessTransportImpl::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& [fd, proto] : pipes_) {
    if (proto->pipe) {
      proto->pipe->close();
    } else if (proto->raw_fd >= 0) {
      // Never connected (start failed): nothing will report it, so it counts as closed.
      ::close(std::exchange(proto->raw_fd, -1));
      proto->disconnected = true;
    }
  }
  // Kill a child still running (asyncio: proc.poll() is None -> proc.kill()).
  if (pid_ > 0 && !returncode_ && !(watcher_ && watcher_->exited())) ::kill(pid_, SIGKILL);
  if (returncode_) try_finish();
}

void SubprocessTransportImpl::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
  auto p = std::dynamic_pointer_cast<SubprocessProtocol>(protocol);
  if (!p) throw std::invalid_argument("a subprocess transport needs a SubprocessProtocol");
  protocol_.set(std::move(p));
}

std::any SubprocessTransportImpl::get_extra_info(std::string_view name,
                                                 std::any default_value) const {
  (void)name;
  return default_value;
}

BaseTransport* SubprocessTransportImpl::get_pipe_transport(int fd) const {
  auto it = pipes_.find(fd);
  return it == pipes_.end() ? nullptr : it->second->pipe_owner.get();
}

void SubprocessTransportImpl::send_signal(int sig) {
  // asyncio's _check_proc: after connection_lost the process is gone (ProcessLookupError).
  if (lost_) throw std::system_error(ESRCH, std::generic_category(), "send_signal");
  // Popen.send_signal: once reaped, the pid may be someone else's: send nothing.
  if (returncode_ || (watcher_ && watcher_->reaped())) return;
  if (::kill(pid_, sig) != 0 && errno != ESRCH)
    throw std::system_error(errno, std::generic_category(), "kill");
}

void SubprocessTransportImpl::terminate() {
  send_signal(SIGTERM);
}
void SubprocessTransportImpl::kill() {
  send_signal(SIGKILL);
}

void SubprocessTransportImpl::loop_destroyed() noexcept {
  auto protocol = protocol_.take();
  auto keep = std::move(self_);  // released last
}

}  // namespace loop::detail

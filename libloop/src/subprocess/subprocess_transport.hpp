// SubprocessTransportImpl: asyncio's BaseSubprocessTransport (base_subprocess.py) with
// _UnixSubprocessTransport's _start, over the loop's pipe transports.
#pragma once

#include <sys/types.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "loop/future.hpp"
#include "loop/protocol_slot.hpp"
#include "loop/transports.hpp"
#include "subprocess/child_watcher.hpp"
#include "subprocess/spawn.hpp"

namespace loop::detail {

class SubprocessTransportImpl;

/// asyncio's WriteSubprocessPipeProto / ReadSubprocessPipeProto: the protocol of one of the
/// child's pipes, reporting to the subprocess transport.
class SubprocessPipeProto final : public Protocol {
 public:
  SubprocessPipeProto(SubprocessTransportImpl* proc, int fd) : proc(proc), fd(fd) {}
  void connection_made(BaseTransport& transport) override { pipe = &transport; }
  void connection_lost(std::exception_ptr exc) override;
  void data_received(std::string_view data) override;
  void pause_writing() override;
  void resume_writing() override;

  SubprocessTransportImpl* proc;  // cleared once connection_lost has been reported
  int fd;
  BaseTransport* pipe = nullptr;
  std::shared_ptr<BaseTransport> pipe_owner;  // keeps get_pipe_transport's answer valid
  int raw_fd = -1;                            // the parent's end until a transport owns it
  bool disconnected = false;
};

class SubprocessTransportImpl final : public SubprocessTransport,
                                      public LoopResource,
                                      public std::enable_shared_from_this<SubprocessTransportImpl> {
 public:
  /// Spawns the child (throws as spawn_child does); start() does the rest.
  SubprocessTransportImpl(EventLoop& loop, std::shared_ptr<SubprocessProtocol> protocol,
                          const std::vector<std::string>& argv, std::string display_name,
                          const SubprocessOptions& options);
  ~SubprocessTransportImpl() override;
  void loop_destroyed() noexcept override;

  /// Watches the child's exit and connects the pipes in a task; `waiter` gets the outcome
  /// (connection_made is scheduled before it completes).
  void start(Future<void> waiter);

  std::any get_extra_info(std::string_view name, std::any default_value = {}) const override;
  bool is_closing() const override { return closed_; }
  void close() override;
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_.shared(); }
  int get_pid() const override { return pid_; }
  std::optional<int> get_returncode() const override { return returncode_; }
  BaseTransport* get_pipe_transport(int fd) const override;
  void send_signal(int sig) override;
  void terminate() override;
  void kill() override;

  /// asyncio's _wait: the returncode once the process exited and every pipe is closed.
  Future<int> wait();

  // From the pipe protocols.
  void pipe_connection_lost(int fd, std::exception_ptr exc);
  void pipe_data_received(int fd, std::string_view data);
  ProtocolSlot<SubprocessProtocol>& protocol() { return protocol_; }

 private:
  Coroutine<void> connect_pipes(Future<void> waiter);
  void process_exited(int returncode);
  void call(const char* name, std::function<void()> cb);  // asyncio's _call
  void try_finish();
  void call_connection_lost(std::exception_ptr exc);

  EventLoop& loop_;
  ProtocolSlot<SubprocessProtocol> protocol_;
  pid_t pid_ = -1;
  std::string program_;
  std::optional<int> returncode_;
  bool closed_ = false;
  bool finished_ = false;
  bool start_failed_ = false;  // connecting the pipes failed
  bool lost_ = false;          // connection_lost ran: the child is history
  std::map<int, std::shared_ptr<SubprocessPipeProto>> pipes_;
  // Calls made before connection_made has been scheduled wait here (asyncio's _pending_calls).
  std::optional<std::deque<std::pair<const char*, std::function<void()>>>> pending_calls_{
      std::in_place};
  std::vector<Future<int>> exit_waiters_;
  std::shared_ptr<ChildWatcher> watcher_;
  std::shared_ptr<SubprocessTransportImpl> self_;  // the loop's reference until connection_lost
};

}  // namespace loop::detail

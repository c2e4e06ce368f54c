// Subprocesses: EventLoop::subprocess_exec / subprocess_shell (the transport level, asyncio's
// loop.subprocess_exec) and loop::create_subprocess_exec / create_subprocess_shell with
// loop::Process (asyncio.subprocess). Implementation in libloop/src/subprocess/.
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "loop/coroutine.hpp"
#include "loop/future.hpp"
#include "loop/streams.hpp"
#include "loop/subprocess_options.hpp"
#include "loop/transports.hpp"

namespace loop {

namespace detail {
Coroutine<std::shared_ptr<SubprocessTransport>> subprocess_exec(
    EventLoop& loop, std::function<std::shared_ptr<SubprocessProtocol>()> protocol_factory,
    std::vector<std::string> argv, std::string display_name, SubprocessOptions options);
/// asyncio's transport._wait(): the returncode once the process exited and (if it had not yet
/// when called) every pipe is closed.
Future<int> subprocess_wait(SubprocessTransport& transport);
}  // namespace detail

template <class Factory>
Coroutine<std::pair<std::shared_ptr<SubprocessTransport>, std::invoke_result_t<Factory&>>>
EventLoop::subprocess_exec(Factory protocol_factory, std::string program,
                           std::vector<std::string> args, SubprocessOptions options) {
  using ProtocolPtr = std::invoke_result_t<Factory&>;
  static_assert(std::is_convertible_v<ProtocolPtr, std::shared_ptr<SubprocessProtocol>>,
                "protocol_factory must return std::shared_ptr<P>, P a SubprocessProtocol");
  ProtocolPtr protocol;
  std::vector<std::string> argv;
  argv.reserve(args.size() + 1);
  argv.push_back(program);
  for (auto& a : args) argv.push_back(std::move(a));
  auto transport = co_await detail::subprocess_exec(
      *this,
      [&]() -> std::shared_ptr<SubprocessProtocol> {
        protocol = protocol_factory();
        return protocol;
      },
      std::move(argv), std::move(program), std::move(options));
  co_return std::make_pair(std::move(transport), std::move(protocol));
}

template <class Factory>
Coroutine<std::pair<std::shared_ptr<SubprocessTransport>, std::invoke_result_t<Factory&>>>
EventLoop::subprocess_shell(Factory protocol_factory, std::string cmd, SubprocessOptions options) {
  using ProtocolPtr = std::invoke_result_t<Factory&>;
  static_assert(std::is_convertible_v<ProtocolPtr, std::shared_ptr<SubprocessProtocol>>,
                "protocol_factory must return std::shared_ptr<P>, P a SubprocessProtocol");
  ProtocolPtr protocol;
  std::vector<std::string> argv{"/bin/sh", "-c", cmd};
  auto transport = co_await detail::subprocess_exec(
      *this,
      [&]() -> std::shared_ptr<SubprocessProtocol> {
        protocol = protocol_factory();
        return protocol;
      },
      std::move(argv), std::move(cmd), std::move(options));
  co_return std::make_pair(std::move(transport), std::move(protocol));
}

// ---- asyncio.subprocess --------------------------------------------------------------------
// The child's stdout/stderr are StreamReaders (as in asyncio); its stdin is written through
// PipeWriter, StreamWriter's write side and drain for a pipe (a StreamWriter needs a
// bidirectional transport and its StreamReaderProtocol).

/// The writing half of a pipe (asyncio.StreamWriter, with FlowControlMixin's drain).
class PipeWriter {
 public:
  PipeWriter(EventLoop& loop, WriteTransport* transport) : loop_(loop), transport_(transport) {}
  void write(std::string_view data) { transport_->write(data); }
  void write_eof() { transport_->write_eof(); }
  bool can_write_eof() const { return transport_->can_write_eof(); }
  void close() { transport_->close(); }
  bool is_closing() const { return transport_->is_closing(); }
  WriteTransport& transport() const { return *transport_; }
  /// Waits while the transport's buffer is over its high-water mark; after the pipe was lost
  /// throws std::system_error(ECONNRESET) (asyncio's ConnectionResetError).
  Coroutine<void> drain();

  // Flow control, called by the process's protocol.
  void pause_writing() { paused_ = true; }
  void resume_writing();
  void connection_lost(std::exception_ptr exc);

 private:
  EventLoop& loop_;
  WriteTransport* transport_;
  bool paused_ = false;
  bool connection_lost_ = false;
  std::vector<Future<void>> drain_waiters_;
};

/// A child process (asyncio.subprocess.Process). Copies share the same child.
class Process {
 public:
  Process(std::shared_ptr<SubprocessTransport> transport, std::shared_ptr<PipeWriter> std_in,
          std::shared_ptr<StreamReader> std_out, std::shared_ptr<StreamReader> std_err);

  int pid() const { return pid_; }
  /// nullopt while it runs; the exit code, or -N if signal N killed it.
  std::optional<int> returncode() const { return transport_->get_returncode(); }
  /// Waits until the process exits (and its pipes are closed, as asyncio 3.11): returncode.
  Coroutine<int> wait();
  /// Sends `input` (if any; then closes stdin), reads stdout and stderr to EOF at the same
  /// time (so a child filling a pipe before it reads cannot deadlock), waits for the exit.
  /// A child gone before taking its input is no error (EPIPE/ECONNRESET ignored, as asyncio).
  /// Returns (stdout, stderr); "" for a stream that is not a PIPE.
  Coroutine<std::pair<std::string, std::string>> communicate(
      std::optional<std::string> input = std::nullopt);
  void send_signal(int sig) { transport_->send_signal(sig); }
  void terminate() { transport_->terminate(); }
  void kill() { transport_->kill(); }
  const std::shared_ptr<SubprocessTransport>& transport() const { return transport_; }

  /// The pipes asked for with PIPE (null otherwise). std_in/std_out/std_err: C may define
  /// stdin/stdout/stderr as macros.
  std::shared_ptr<PipeWriter> std_in;
  std::shared_ptr<StreamReader> std_out;
  std::shared_ptr<StreamReader> std_err;

 private:
  std::shared_ptr<SubprocessTransport> transport_;
  int pid_;
};

/// asyncio.create_subprocess_exec on the running loop: `program` with `args`.
Coroutine<Process> create_subprocess_exec(std::string program, std::vector<std::string> args = {},
                                          SubprocessOptions options = {});
/// asyncio.create_subprocess_shell: `cmd` run by "/bin/sh -c".
Coroutine<Process> create_subprocess_shell(std::string cmd, SubprocessOptions options = {});

}  // namespace loop

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
// The child's stdout/stderr are read through PipeReader and its stdin written through
// PipeWriter: the parts of asyncio's StreamReader/StreamWriter a Process needs (with the same
// flow control), until the stream classes can take their place.

/// The reading half of a pipe (asyncio.StreamReader's read side).
class PipeReader : public std::enable_shared_from_this<PipeReader> {
 public:
  explicit PipeReader(EventLoop& loop, std::size_t limit = 64 * 1024);
  /// Up to `n` bytes; n < 0 reads until EOF. "" at EOF.
  Coroutine<std::string> read(std::ptrdiff_t n = -1);
  /// Up to and including the next '\n'; at EOF what is left (maybe "").
  Coroutine<std::string> readline();
  /// EOF was fed and the buffer is empty.
  bool at_eof() const { return eof_ && buffer_.empty(); }
  std::exception_ptr exception() const { return exception_; }

  // The protocol's side (feed_data and friends in asyncio).
  /// Reading is paused on `transport` when more than 2 * limit bytes are buffered.
  void set_transport(ReadTransport* transport) { transport_ = transport; }
  void feed_data(std::string_view data);
  void feed_eof();
  void set_exception(std::exception_ptr exc);

 private:
  Coroutine<void> wait_for_data(const char* func);
  void wakeup_waiter();
  void maybe_resume_transport();

  EventLoop& loop_;
  std::size_t limit_;
  std::string buffer_;
  bool eof_ = false;
  bool paused_ = false;
  std::exception_ptr exception_;
  std::optional<Future<void>> waiter_;
  ReadTransport* transport_ = nullptr;
};

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
          std::shared_ptr<PipeReader> std_out, std::shared_ptr<PipeReader> std_err);

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
  std::shared_ptr<PipeReader> std_out;
  std::shared_ptr<PipeReader> std_err;

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

// loop::Process and create_subprocess_exec/shell (asyncio/subprocess.py), with
// ProcessProtocol as asyncio's SubprocessStreamProtocol.
#include <algorithm>
#include <cerrno>
#include <system_error>

#include "loop/loop.hpp"

namespace loop {

namespace {

class ProcessProtocol final : public SubprocessProtocol {
 public:
  explicit ProcessProtocol(EventLoop& loop) : loop_(loop) {}

  void connection_made(BaseTransport& transport) override {
    transport_ = dynamic_cast<SubprocessTransport*>(&transport);
    if (!transport_) return;
    if (auto* t = dynamic_cast<ReadTransport*>(transport_->get_pipe_transport(1))) {
      std_out = std::make_shared<StreamReader>(loop_);
      std_out->set_transport(t);
      pipe_fds_.push_back(1);
    }
    if (auto* t = dynamic_cast<ReadTransport*>(transport_->get_pipe_transport(2))) {
      std_err = std::make_shared<StreamReader>(loop_);
      std_err->set_transport(t);
      pipe_fds_.push_back(2);
    }
    if (auto* t = dynamic_cast<WriteTransport*>(transport_->get_pipe_transport(0)))
      std_in = std::make_shared<PipeWriter>(loop_, t);
  }

  void pipe_data_received(int fd, std::string_view data) override {
    if (auto* r = reader(fd)) r->feed_data(data);
  }

  void pipe_connection_lost(int fd, std::exception_ptr exc) override {
    if (fd == 0) {
      if (std_in) {
        std_in->close();
        std_in->connection_lost(exc);
      }
      return;
    }
    if (auto* r = reader(fd)) {
      if (exc)
        r->set_exception(exc);
      else
        r->feed_eof();
    }
    pipe_fds_.erase(std::remove(pipe_fds_.begin(), pipe_fds_.end(), fd), pipe_fds_.end());
    maybe_close_transport();
  }

  void process_exited() override {
    exited_ = true;
    maybe_close_transport();
  }

  void pause_writing() override {
    if (std_in) std_in->pause_writing();
  }
  void resume_writing() override {
    if (std_in) std_in->resume_writing();
  }

  std::shared_ptr<PipeWriter> std_in;
  std::shared_ptr<StreamReader> std_out, std_err;

 private:
  StreamReader* reader(int fd) const {
    return fd == 1 ? std_out.get() : fd == 2 ? std_err.get() : nullptr;
  }
  void maybe_close_transport() {
    if (pipe_fds_.empty() && exited_ && transport_) {
      transport_->close();
      transport_ = nullptr;
    }
  }

  EventLoop& loop_;
  SubprocessTransport* transport_ = nullptr;
  std::vector<int> pipe_fds_;
  bool exited_ = false;
};

Coroutine<void> feed_stdin(std::shared_ptr<PipeWriter> w, std::string input) {
  try {
    w->write(input);
    co_await w->drain();
  } catch (const std::system_error& e) {
    // communicate() ignores BrokenPipeError and ConnectionResetError: the child has gone.
    int err = e.code().value();
    if (e.code().category() != std::generic_category() || (err != EPIPE && err != ECONNRESET))
      throw;
  }
  w->close();
}

Coroutine<void> noop() {
  co_return;
}
Coroutine<std::string> empty_output() {
  co_return std::string();
}

Coroutine<std::string> read_stream(std::shared_ptr<SubprocessTransport> t,
                                   std::shared_ptr<StreamReader> r, int fd) {
  std::string output = co_await r->read();
  if (auto* pipe = t->get_pipe_transport(fd)) pipe->close();
  co_return output;
}

Coroutine<Process> make_process(EventLoop& lp, std::vector<std::string> argv, std::string display,
                                SubprocessOptions options) {
  std::shared_ptr<ProcessProtocol> protocol;
  auto transport = co_await detail::subprocess_exec(
      lp,
      [&]() -> std::shared_ptr<SubprocessProtocol> {
        protocol = std::make_shared<ProcessProtocol>(lp);
        return protocol;
      },
      std::move(argv), std::move(display), std::move(options));
  co_return Process(transport, protocol->std_in, protocol->std_out, protocol->std_err);
}

}  // namespace

Process::Process(std::shared_ptr<SubprocessTransport> transport, std::shared_ptr<PipeWriter> in,
                 std::shared_ptr<StreamReader> out, std::shared_ptr<StreamReader> err)
    : std_in(std::move(in)),
      std_out(std::move(out)),
      std_err(std::move(err)),
      transport_(std::move(transport)),
      pid_(transport_->get_pid()) {}

Coroutine<int> Process::wait() {
  auto t = transport_;
  co_return co_await detail::subprocess_wait(*t);
}

Coroutine<std::pair<std::string, std::string>> Process::communicate(
    std::optional<std::string> input) {
  auto t = transport_;
  auto in = std_in;
  auto out = std_out;
  auto err = std_err;
  Coroutine<void> feed = input && in ? feed_stdin(in, std::move(*input)) : noop();
  Coroutine<std::string> rout = out ? read_stream(t, out, 1) : empty_output();
  Coroutine<std::string> rerr = err ? read_stream(t, err, 2) : empty_output();
  auto gathered = gather(std::move(feed), std::move(rout), std::move(rerr));
  auto results = co_await gathered;
  co_await detail::subprocess_wait(*t);
  co_return std::make_pair(std::move(std::get<1>(results)), std::move(std::get<2>(results)));
}

Coroutine<Process> create_subprocess_exec(std::string program, std::vector<std::string> args,
                                          SubprocessOptions options) {
  EventLoop& lp = get_running_loop();
  std::vector<std::string> argv{program};
  for (auto& a : args) argv.push_back(std::move(a));
  co_return co_await make_process(lp, std::move(argv), std::move(program), std::move(options));
}

Coroutine<Process> create_subprocess_shell(std::string cmd, SubprocessOptions options) {
  EventLoop& lp = get_running_loop();
  std::vector<std::string> argv{"/bin/sh", "-c", cmd};
  co_return co_await make_process(lp, std::move(argv), std::move(cmd), std::move(options));
}

}  // namespace loop

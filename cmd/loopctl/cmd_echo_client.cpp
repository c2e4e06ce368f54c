// loopctl echo-client: connects (create_connection through open_connection), sends the message
// N times, reads each echo and prints it; exit 0 only if every echo matched.
#include <cstdio>
#include <limits>

#include "serve.hpp"

namespace loopctl {
namespace {

// Outside the coroutine: GCC 12 miscompiles string literals in coroutine bodies.
[[noreturn]] void throw_no_echo(const Endpoint& ep, double timeout) {
  throw RuntimeFailure("no echo from " + ep.to_string() + " within " + format_seconds(timeout) +
                       " s");
}
[[noreturn]] void throw_closed_early(const Endpoint& ep, std::size_t got, std::size_t want) {
  throw RuntimeFailure("connection closed by " + ep.to_string() + " after " + std::to_string(got) +
                       " of " + std::to_string(want) + " bytes of an echo");
}
void print_line(const std::string& s) {
  std::printf("%s\n", s.c_str());
  std::fflush(stdout);
}

// What has already arrived after an echo, before the next message goes out: a correct server
// has sent nothing more (the echo itself was read with readexactly, however it was split). A
// read that would have to wait is cancelled: this never waits for the network.
loop::Coroutine<std::string> take_arrived(loop::EventLoop& lp,
                                          std::shared_ptr<loop::StreamReader> reader) {
  loop::Task<std::string> read = lp.create_task(reader->read(std::numeric_limits<long>::max()));
  co_await loop::sleep(0);  // the read runs first: done at once if the buffer holds anything
  if (!read.done()) read.cancel();
  // The reader allows one waiter at a time: the next readexactly must find it gone.
  while (!read.done()) co_await loop::sleep(0);
  // A failure (a reset) is not an extra byte: the next read, if any, reports it.
  if (read.cancelled() || read.exception()) co_return std::string();
  co_return read.result();
}

class EchoClient final : public Command {
 public:
  const char* name() const override { return "echo-client"; }
  const char* description() const override {
    return "Connect to ENDPOINT, send --message --count times, print each echo; exit 0 only "
           "if every echo matched";
  }
  void setup(CLI::App& app) override {
    app.add_option("endpoint", endpoint_, "HOST:PORT, [V6ADDR]:PORT or unix:PATH")->required();
    app.add_option("--message", message_, "The message to send");
    app.add_option("--count", count_, "How many times to send it")->check(non_negative_number());
    app.add_option("--timeout", timeout_, "Seconds to wait for each echo")
        ->check(positive_number());
    tls_.add_to(app);
  }

  int run(loop::EventLoop& lp) override {
    Endpoint ep = parse_endpoint(endpoint_);
    if (message_.empty()) throw UsageError("--message must not be empty");
    auto ssl = tls_.context();
    return lp.run_until_complete(talk(lp, ep, ssl));
  }
  std::string virtual_clock_conflict() const override {
    return timeouts_virtual_clock_conflict(name());
  }

 private:
  loop::Coroutine<int> talk(loop::EventLoop& lp, Endpoint ep,
                            std::shared_ptr<loop::SSLContext> ssl) {
    loop::ConnectionOptions opts;
    opts.ssl = ssl;
    if (!tls_.server_hostname.empty()) opts.server_hostname = tls_.server_hostname;
    loop::StreamPair streams;
    std::string error;
    try {
      if (ep.is_unix())
        streams = co_await loop::open_unix_connection(ep.path, opts);
      else
        streams = co_await loop::open_connection(ep.host, ep.port, opts);
    } catch (const std::exception& e) {
      error = connect_error(ep, e);
    }
    if (!error.empty()) throw RuntimeFailure(error);
    auto [reader, writer] = streams;
    int mismatches = 0;
    std::string first_mismatch;
    for (int i = 0; i < count_; ++i) {
      writer->write(message_);
      co_await writer->drain();
      std::string echo;
      bool timed_out = false;
      bool closed = false;
      try {
        echo = co_await loop::wait_for(reader->readexactly(message_.size()), timeout_);
      } catch (const loop::TimeoutError&) {
        timed_out = true;
      } catch (const loop::IncompleteReadError& e) {
        echo = e.partial;
        closed = true;
      }
      if (timed_out) throw_no_echo(ep, timeout_);
      if (closed) throw_closed_early(ep, echo.size(), message_.size());
      std::string extra = co_await take_arrived(lp, reader);
      echo += extra;
      print_line(echo);
      if (echo != message_ && mismatches++ == 0)
        first_mismatch = describe_bad_echo(i + 1, message_, echo);
    }
    writer->close();
    co_await writer->wait_closed();
    if (mismatches) throw_echo_mismatches(mismatches, count_, first_mismatch);
    co_return 0;
  }

  std::string endpoint_;
  std::string message_ = "Hello World!";
  int count_ = 1;
  double timeout_ = 10;
  ClientTlsOptions tls_;
};

}  // namespace

std::unique_ptr<Command> make_echo_client() {
  return std::make_unique<EchoClient>();
}

}  // namespace loopctl

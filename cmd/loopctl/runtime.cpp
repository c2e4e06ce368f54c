// The loop a subcommand runs on, and how loopctl reports errors.
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "command.hpp"
#include "endpoint.hpp"

namespace loopctl {

void print_error(const std::string& what) {
  std::fflush(stdout);
  std::fprintf(stderr, "loopctl: error: %s\n", what.c_str());
  std::fflush(stderr);
}

void flush_stdout() {
  if (std::fflush(stdout) == 0 && !std::ferror(stdout)) return;
  int err = errno;
  std::clearerr(stdout);
  throw RuntimeFailure(std::string("cannot write to standard output: ") +
                       std::strerror(err != 0 ? err : EIO));
}

namespace {
CLI::Validator number_check(const char* desc, bool (*ok)(double), const char* what) {
  return CLI::Validator(
      [ok, what](std::string& value) -> std::string {
        try {
          std::size_t used = 0;
          double v = std::stod(value, &used);
          if (used == value.size() && ok(v)) return {};
        } catch (const std::exception&) {
        }
        return "'" + value + "' is not " + what;
      },
      desc);
}
}  // namespace

CLI::Validator positive_number() {
  return number_check(
      "POSITIVE", [](double v) { return v > 0; }, "a number greater than 0");
}
CLI::Validator non_negative_number() {
  return number_check(
      "NONNEGATIVE", [](double v) { return v >= 0; }, "a number >= 0");
}

CLI::Validator non_empty(const char* what) {
  return CLI::Validator(
      [what](std::string& value) -> std::string {
        return value.empty() ? std::string("an empty ") + what : std::string();
      },
      "NONEMPTY");
}

CLI::Validator octal_mode() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        bool ok = !value.empty() && value.size() <= 4 &&
                  value.find_first_not_of("01234567") == std::string::npos;
        return ok ? std::string() : "'" + value + "' is not an octal mode such as 600 or 0660";
      },
      "OCTAL");
}

unsigned parse_octal_mode(const std::string& text) {
  return static_cast<unsigned>(std::stoul(text, nullptr, 8));
}

// Every --host goes through parse_host, so that "[::1]" means the same to every server (and
// their messages print it back as "[::1]:PORT", not "[[::1]]:PORT").
CLI::Validator host_address() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        try {
          value = parse_host(value);
          return {};
        } catch (const UsageError& e) {
          return e.what();
        }
      },
      "");
}

std::string format_seconds(double seconds) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, seconds);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(seconds);
}

namespace {
int g_interrupted = 0;
}

int interrupted_by() {
  return g_interrupted;
}

void stop_on_interrupt(loop::EventLoop& lp, int& caught) {
  for (int sig : {SIGINT, SIGTERM}) {
    lp.add_signal_handler(sig, [&lp, &caught, sig] {
      if (!caught) caught = sig;
      lp.stop();
    });
  }
}

namespace {
// What the loop reports (an accept that failed for lack of descriptors, a callback that threw)
// as one `loopctl:` line, as loopctl's other diagnostics: the message and the exception's.
// Debug mode keeps the loop's full report (the handle, where it was created...).
void report_in_one_line(loop::EventLoop& lp, const loop::ExceptionContext& context) {
  if (lp.get_debug()) {
    lp.default_exception_handler(context);
    return;
  }
  std::string line = context.message;
  if (context.exception) {
    try {
      std::rethrow_exception(context.exception);
    } catch (const std::exception& e) {
      line += std::string(": ") + e.what();
    } catch (...) {
      line += ": an exception of unknown type";
    }
  }
  std::fprintf(stderr, "loopctl: %s\n", line.c_str());
  std::fflush(stderr);
}
}  // namespace

std::unique_ptr<loop::EventLoop> make_loop(const GlobalOptions& options) {
  auto lp = std::make_unique<loop::EventLoop>(options.virtual_clock ? loop::make_virtual_clock()
                                                                    : nullptr);
  if (options.debug) lp->set_debug(true);
  lp->set_exception_handler(report_in_one_line);
  lp->slow_callback_duration = options.slow_callback_ms / 1000.0;
  if (options.trace) {
    try {
      lp->set_tracer(loop::open_tracer(*options.trace, options.trace_format));
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
  }
  // By default SIGINT/SIGTERM stop the loop instead of killing the process, so that a trace
  // file ends complete; main() then exits 128 + the signal, as a shell reports it.
  for (int sig : {SIGINT, SIGTERM}) {
    lp->add_signal_handler(sig, [raw = lp.get(), sig] {
      if (!g_interrupted) g_interrupted = sig;
      raw->stop();
    });
  }
  loop::set_event_loop(lp.get());
  return lp;
}

}  // namespace loopctl

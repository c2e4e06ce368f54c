// What every loopctl subcommand is: a name, its CLI11 options, and a run on a prepared loop.
#pragma once

#include <CLI/CLI.hpp>
#include <loop/loop.hpp>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace loopctl {

// The options accepted before the subcommand (../shared/spec/loopctl.md, "Global options").
struct GlobalOptions {
  std::optional<std::string> trace;  // destination: a path or "-" (stderr)
  std::string trace_format = "jsonl";
  double slow_callback_ms = 100;
  bool debug = false;
  bool virtual_clock = false;
};

// A failure the user caused at run time (exit 1), printed as one `loopctl: error:` line.
class RuntimeFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A bad value found after parsing (exit 2, like CLI11's own errors).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Command {
 public:
  virtual ~Command() = default;
  virtual const char* name() const = 0;
  virtual const char* description() const = 0;
  /// Adds the subcommand's options to `app` (already named and described).
  virtual void setup(CLI::App& app) = 0;
  /// Runs on `loop`; returns the exit code.
  virtual int run(loop::EventLoop& loop) = 0;
  /// Why this invocation cannot run on --virtual-clock, as "WHAT: WHY" (e.g. "echo-client: its
  /// timeouts would expire before..."); empty when it can. Simulated time jumps to the next
  /// timer whenever no I/O is ready at once, so a timeout that bounds real I/O fires first.
  virtual std::string virtual_clock_conflict() const { return {}; }
};

/// CLI11 validators with messages people can read ("must be a number > 0").
CLI::Validator positive_number();
CLI::Validator non_negative_number();
/// Refuses an empty value: "an empty <what>" (an empty --unix path would be ignored).
CLI::Validator non_empty(const char* what);
/// An octal permission mask such as 600 or 0660 (for --unix-mode).
CLI::Validator octal_mode();
/// The value of an option octal_mode() accepted.
unsigned parse_octal_mode(const std::string& text);
/// A --host value: a name or address as it is, a bracketed IPv6 literal without its brackets
/// ("[::1]" -> "::1", as in endpoints). A transform: use with ->transform().
CLI::Validator host_address();

/// Seconds as the user would write them: "10", "0.5" (shortest form that reads back the same).
std::string format_seconds(double seconds);

/// Every subcommand, in the order `loopctl --help` lists them.
std::vector<std::unique_ptr<Command>> all_commands();

/// The loop a subcommand runs on, as the global options ask (clock, debug mode, tracer).
std::unique_ptr<loop::EventLoop> make_loop(const GlobalOptions& options);

/// SIGINT/SIGTERM stop the loop cleanly (so traces are complete); returns the signal number
/// caught, 0 if none, through `caught`. Exit code for an interrupted client: 128 + signal.
void stop_on_interrupt(loop::EventLoop& lp, int& caught);

/// The SIGINT/SIGTERM that interrupted a subcommand through make_loop's default handlers (which
/// stop the loop so that traces end complete); 0 if none. Subcommands that handle these
/// signals themselves install their own handlers, which replace the defaults.
int interrupted_by();

/// Flushes stdout; throws RuntimeFailure("cannot write to standard output: ...") if anything
/// written to it was lost (a full disk, a closed descriptor): a script waiting for a line that
/// never comes would wait forever.
void flush_stdout();

/// Prints `loopctl: error: <what>` on stderr.
void print_error(const std::string& what);

}  // namespace loopctl

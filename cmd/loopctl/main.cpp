// loopctl: main() wires CLI11 to the subcommands; each lives in its own cmd_*.cpp.
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "command.hpp"

#ifndef LOOPCTL_VERSION
#define LOOPCTL_VERSION "0.0.0"
#endif

namespace {

// `--trace` takes its value only when attached with '=': `loopctl --trace hello` traces hello to
// stderr. CLI11 would take "hello" as the value, so a bare --trace becomes --trace=- first.
std::vector<std::string> normalize_args(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--trace") a = "--trace=-";
    if (a == "--trace=")
      throw loopctl::UsageError("--trace=: an empty destination (a file, or '-')");
    args.push_back(a);
  }
  return args;
}

// CLI11 reports an unknown subcommand or option given before any subcommand as "A subcommand
// is required": said as what it is, from the arguments CLI11 could not place.
std::string usage_error_text(const CLI::App& app, const CLI::ParseError& e) {
  if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && app.get_subcommands().empty()) {
    auto rest = app.remaining();
    if (!rest.empty()) {
      const std::string& first = rest.front();
      return (first.rfind('-', 0) == 0 ? "unknown option '" : "unknown subcommand '") + first + "'";
    }
  }
  return e.what();
}

// A closed standard descriptor would be taken by the loop's epoll fd or a socket, and output
// meant for the terminal would go there. Each is held by /dev/null, opened read-only, so that
// writing to it still fails (EBADF) as it would have, and is reported.
void hold_closed_standard_fds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    int held = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (held > fd) ::close(held);  // cannot happen: the lower ones are open by now
  }
}

// asyncio.run's _cancel_all_tasks: cancel every pending task and let each see its
// CancelledError, a bounded number of iterations.
void cancel_pending_tasks(loop::EventLoop& lp) {
  if (lp.is_closed() || lp.is_running()) return;
  for (auto& t : loop::all_tasks(lp)) t.cancel();
  for (int i = 0; i < 10 && !loop::all_tasks(lp).empty(); ++i) {
    lp.call_soon([&lp] { lp.stop(); });
    lp.run_forever();
  }
  lp.close();
}

void block_interrupts() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace loopctl;
  hold_closed_standard_fds();
  CLI::App app{
      "loopctl: quick servers and clients, and the asyncio event loop's documented "
      "examples, on libloop. Every subcommand can print a JSON trace of each loop "
      "iteration and callback (--trace).",
      "loopctl"};
  app.set_version_flag("--version", std::string("loopctl ") + LOOPCTL_VERSION,
                       "Print the version and exit");
  app.require_subcommand(1);
  // Global options are also accepted after the subcommand: `loopctl echo-server --trace`.
  app.fallthrough();
  app.option_defaults()->always_capture_default();
  app.footer(
      "Exit codes: 0 success, 1 runtime failure, 2 usage error.\n"
      "Environment: LOOP_DEBUG=1 turns on debug mode, as --debug does.");

  GlobalOptions global;
  std::string trace_dest;
  auto* trace_opt = app.add_option("--trace", trace_dest,
                                   "Write a trace of every loop iteration, callback and "
                                   "transport event to DEST (a file; '-' = stderr). The value "
                                   "only when attached with '=': --trace=FILE")
                        ->type_name("[=DEST]");
  app.add_option("--trace-format", global.trace_format,
                 "jsonl: one JSON object per line (docs/trace.md); chrome: a Chrome Trace "
                 "Event document for Perfetto / chrome://tracing")
      ->check(CLI::IsMember({"jsonl", "chrome"}));
  app.add_option("--slow-callback-ms", global.slow_callback_ms,
                 "Debug mode reports callbacks slower than this many milliseconds")
      ->check(non_negative_number());
  app.add_flag("--debug", global.debug,
               "The loop's debug mode: slow callbacks and never-retrieved exceptions are "
               "reported, calls from a wrong thread are refused");
  app.add_flag("--virtual-clock", global.virtual_clock,
               "Run timers in simulated time: no real waiting, same output order. Time jumps to "
               "the next timer whenever no I/O is ready, so it is refused where a timeout "
               "races real network I/O (echo-client, udp-echo-client, TLS handshakes), and "
               "grace periods (a server's shutdown, exec's SIGKILL) end at once");

  auto commands = all_commands();
  Command* chosen = nullptr;
  for (auto& cmd : commands) {
    CLI::App* sub = app.add_subcommand(cmd->name(), cmd->description());
    sub->option_defaults()->always_capture_default();
    cmd->setup(*sub);
    sub->final_callback([&chosen, c = cmd.get()] { chosen = c; });
  }

  std::vector<std::string> args;
  try {
    args = normalize_args(argc, argv);
  } catch (const UsageError& e) {
    print_error(std::string(e.what()) + " (see loopctl --help)");
    return 2;
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes a reversed vector
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    print_error(usage_error_text(app, e) + " (see loopctl --help)");
    return 2;
  }
  if (*trace_opt) global.trace = trace_dest.empty() ? std::string("-") : trace_dest;
  if (global.virtual_clock && !chosen->virtual_clock_conflict().empty()) {
    print_error("--virtual-clock cannot be used with " + chosen->virtual_clock_conflict() +
                " (see loopctl --help)");
    return 2;
  }

  std::unique_ptr<loop::EventLoop> loop;
  try {
    loop = make_loop(global);
    int code = chosen->run(*loop);
    // Done: closing the loop gives SIGINT/SIGTERM their default action back, and a second
    // Ctrl-C (or a `timeout` wrapper's signal) in the last moments would kill the process
    // with that signal after a clean shutdown. Blocked, it stays pending until the exit.
    block_interrupts();
    if (!loop->is_closed()) loop->close();
    flush_stdout();
    if (interrupted_by()) return 128 + interrupted_by();
    return code;
  } catch (const UsageError& e) {
    print_error(e.what());
    return 2;
  } catch (const std::exception& e) {
    // Stopped by SIGINT/SIGTERM mid-run ("Event loop stopped before Future completed."): not
    // an error to report, just the interruption. Cancel what still runs, as asyncio.run does.
    if (interrupted_by()) {
      cancel_pending_tasks(*loop);
      return 128 + interrupted_by();
    }
    print_error(e.what());
    return 1;
  }
}

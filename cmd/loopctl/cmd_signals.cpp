// loopctl signals: the spec's "Set signal handlers for SIGINT and SIGTERM" example.
#include <unistd.h>

#include <cstdio>
#include <loop/signals.hpp>

#include "command.hpp"
#include "signal_names.hpp"

namespace loopctl {

// External linkage: traces name the callback.
void ask_exit(std::string signame, loop::EventLoop* lp) {
  std::printf("got signal %s: exit\n", signame.c_str());
  std::fflush(stdout);
  lp->stop();
}

namespace {

class Signals final : public Command {
 public:
  const char* name() const override { return "signals"; }
  const char* description() const override {
    return "Install add_signal_handler() for each signal and run forever; the first one "
           "delivered prints 'got signal NAME: exit' and stops the loop";
  }
  void setup(CLI::App& app) override {
    app.add_option("--signals", signals_, "Comma-separated signals to handle (names or numbers)");
  }
  int run(loop::EventLoop& lp) override {
    std::vector<int> sigs = parse_signal_list(signals_);
    std::vector<std::string> names;
    for (int sig : sigs) {
      try {
        lp.add_signal_handler(sig, ask_exit, loop::signal_name(sig), &lp);
      } catch (const std::invalid_argument& e) {
        throw UsageError("cannot handle " + loop::signal_name(sig) + ": " + e.what());
      }
      names.push_back(loop::signal_name(sig));
    }
    std::string list;
    for (std::size_t i = 0; i < names.size(); ++i)
      list += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
    std::printf("Event loop running forever, press Ctrl+C to interrupt.\n");
    std::printf("pid %d: send %s to exit.\n", static_cast<int>(::getpid()), list.c_str());
    std::fflush(stdout);
    lp.run_forever();
    lp.close();
    return 0;
  }

 private:
  std::string signals_ = "SIGINT,SIGTERM";
};

}  // namespace

std::unique_ptr<Command> make_signals() {
  return std::make_unique<Signals>();
}

}  // namespace loopctl

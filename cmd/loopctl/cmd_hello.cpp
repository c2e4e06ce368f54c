// loopctl hello: the spec's "Hello World with call_soon()" example.
#include <cstdio>

#include "command.hpp"

namespace loopctl {

// External linkage: traces and debug reports name callbacks by their exported symbol.
void hello_world(loop::EventLoop* lp) {
  std::printf("Hello World\n");
  std::fflush(stdout);
  lp->stop();
}

namespace {

class Hello final : public Command {
 public:
  const char* name() const override { return "hello"; }
  const char* description() const override {
    return "Schedule a callback with call_soon(); it prints 'Hello World' and stops the loop";
  }
  void setup(CLI::App&) override {}
  int run(loop::EventLoop& lp) override {
    // Schedule a call to hello_world(), then block until loop.stop() is called.
    lp.call_soon(hello_world, &lp);
    lp.run_forever();
    lp.close();
    return 0;
  }
};

}  // namespace

std::unique_ptr<Command> make_hello() {
  return std::make_unique<Hello>();
}

}  // namespace loopctl

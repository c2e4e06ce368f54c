// Set signal handlers for SIGINT and SIGTERM (the asyncio docs' add_signal_handler example).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <loop/loop.hpp>
#include <string>

int main() {
  loop::EventLoop loop;

  auto ask_exit = [&loop](std::string signame) {
    std::printf("got signal %s: exit\n", signame.c_str());
    std::fflush(stdout);
    loop.stop();
  };
  for (int sig : {SIGINT, SIGTERM})
    loop.add_signal_handler(sig, loop::named("ask_exit", ask_exit), loop::signal_name(sig));

  std::printf("Event loop running forever, press Ctrl+C to interrupt.\n");
  std::printf("pid %d: send SIGINT or SIGTERM to exit.\n", static_cast<int>(::getpid()));
  std::fflush(stdout);
  loop.run_forever();
  loop.close();
  return 0;
}

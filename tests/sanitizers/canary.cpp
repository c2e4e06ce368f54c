// A program that does one wrong thing on purpose, so scripts/test-sanitizers.sh can check that
// a report really fails a run with the options it sets (exit status, log file) before it
// trusts a clean run. Built only with LOOP_SANITIZE.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {
volatile int sink;
int shared_counter;  // written by two threads without a lock (the TSan case)
}  // namespace

int main(int argc, char** argv) {
  std::string what = argc > 1 ? argv[1] : "";
  if (what == "leak") {
    char* p = static_cast<char*>(std::malloc(64));
    std::memset(p, 1, 64);
    sink = p[3];
    p = nullptr;  // lost
    return 0;
  }
  if (what == "overflow") {
    char* p = static_cast<char*>(std::malloc(8));
    p[8 + (argc > 2)] = 1;  // one past the end
    sink = p[0];
    std::free(p);
    return 0;
  }
  if (what == "ub") {
    int big = argc > 2 ? 0 : 0x7fffffff;
    sink = big + 1;  // signed overflow
    return 0;
  }
  if (what == "race") {
    std::thread t([] { shared_counter++; });
    shared_counter++;
    t.join();
    sink = shared_counter;
    return 0;
  }
  std::fprintf(stderr, "usage: sanitizer_canary leak|overflow|ub|race\n");
  return 2;
}

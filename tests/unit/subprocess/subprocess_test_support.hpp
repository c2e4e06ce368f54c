// Shared by the subprocess tests: a SubprocessProtocol that records its callbacks, a tracer
// that keeps its records, a bounded run, and zombie counting from /proc.
#pragma once

#include <dirent.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <loop/loop.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace sptest {

/// Arguments as a vector, built outside the calling coroutine: GCC 12 fails ("array used as
/// initializer") on a braced list of string literals inside a coroutine.
template <class... A>
std::vector<std::string> args(A... a) {
  return {std::string(a)...};
}

struct Recorder : loop::SubprocessProtocol {
  loop::EventLoop* lp = nullptr;
  std::vector<std::string> events;
  std::string out, err;
  std::exception_ptr stdin_exc;
  bool lost = false;
  loop::SubprocessTransport* transport = nullptr;

  void connection_made(loop::BaseTransport& t) override {
    transport = dynamic_cast<loop::SubprocessTransport*>(&t);
    events.push_back("connection_made");
  }
  void pipe_data_received(int fd, std::string_view d) override {
    events.push_back("pipe_data_received " + std::to_string(fd) + " " + std::string(d));
    (fd == 1 ? out : err) += d;
  }
  void pipe_connection_lost(int fd, std::exception_ptr e) override {
    events.push_back("pipe_connection_lost " + std::to_string(fd) + (e ? " exc" : ""));
    if (fd == 0) stdin_exc = e;
  }
  void process_exited() override { events.push_back("process_exited"); }
  void connection_lost(std::exception_ptr) override {
    events.push_back("connection_lost");
    lost = true;
    if (lp) lp->stop();
  }
};

struct MemoryTracer : loop::Tracer {
  std::vector<nlohmann::json> records;
  void record(const nlohmann::json& r) override { records.push_back(r); }
};

/// Runs the loop until stopped, at most `seconds`; returns false on timeout.
inline bool run_bounded(loop::EventLoop& lp, double seconds = 20) {
  bool timed_out = false;
  auto guard = lp.call_later(seconds, [&] {
    timed_out = true;
    lp.stop();
  });
  lp.run_forever();
  guard.cancel();
  return !timed_out;
}

/// The children of this process that are zombies (state Z in /proc/<pid>/stat).
inline std::vector<int> zombie_children() {
  std::vector<int> zombies;
  int self = static_cast<int>(::getpid());
  DIR* d = ::opendir("/proc");
  if (!d) return zombies;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::ifstream f("/proc/" + std::string(e->d_name) + "/stat");
    std::string line;
    if (!std::getline(f, line)) continue;
    // pid (comm) state ppid ...: comm may hold spaces, so parse after the last ')'.
    auto rp = line.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream rest(line.substr(rp + 1));
    char state = 0;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == self && state == 'Z') zombies.push_back(static_cast<int>(pid));
  }
  ::closedir(d);
  return zombies;
}

}  // namespace sptest

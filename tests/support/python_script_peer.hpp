// A Python script run as a subprocess, the real peer of a transport test (raw-fd variant): it
// prints the port it listens on (or any first line) and then does its job; the destructor kills it.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace test {

class PythonPeer {
 public:
  /// Runs `python3 -c script args...` with stdout on a pipe.
  explicit PythonPeer(const std::string& script, std::vector<std::string> args = {}) {
    int out[2];
    if (::pipe(out) < 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::vector<std::string> argv_s{"python3", "-u", "-c", script};
    for (auto& a : args) argv_s.push_back(a);
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = posix_spawnp(&pid_, "python3", &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    if (rc != 0) throw std::runtime_error("cannot start python3");
    out_ = out[0];
  }
  ~PythonPeer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
  }
  PythonPeer(const PythonPeer&) = delete;
  PythonPeer& operator=(const PythonPeer&) = delete;

  /// The next line the script prints (blocking; the loop is not running yet).
  std::string readline() {
    std::string line;
    char c;
    while (::read(out_, &c, 1) == 1) {
      if (c == '\n') return line;
      line += c;
    }
    return line;
  }
  int port() { return std::stoi(readline()); }
  /// Waits for the script to end; returns everything else it printed.
  std::string finish(int* status = nullptr) {
    std::string rest;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out_, buf, sizeof buf)) > 0) rest.append(buf, static_cast<std::size_t>(n));
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    if (status) *status = st;
    return rest;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

/// A peer on 127.0.0.1, port 0, that prints its port, accepts one connection, reads nothing
/// for `sleep_s` seconds (the writer's buffers fill up), then reads to EOF and prints the
/// byte count.
inline std::string slow_reader_peer(const char* sleep_s) {
  return std::string(R"PY(
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); time.sleep()PY") +
         sleep_s + R"PY(); n = 0
while True:
    d = c.recv(1 << 20)
    if not d: break
    n += len(d)
print(n, flush=True)
)PY";
}

/// As slow_reader_peer, but it also stops reading for `sleep_s` again after the first
/// `first_bytes`, with a small receive buffer (64 KiB, no autotuning): what the writer sends
/// during either pause stays mostly in its own buffers, whatever the host's TCP memory
/// limits (tcp_rmem may let a fast reader's buffer grow to 32 MiB).
inline std::string pausing_reader_peer(const char* sleep_s, std::size_t first_bytes) {
  return std::string(R"PY(
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.bind(('127.0.0.1', 0)); s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); n = 0
for want in ()PY") +
         std::to_string(first_bytes) + R"PY(, None):
    time.sleep()PY" +
         sleep_s + R"PY()
    while want is None or n < want:
        d = c.recv(min(1 << 20, want - n) if want is not None else 1 << 20)
        if not d: break
        n += len(d)
print(n, flush=True)
)PY";
}

}  // namespace test

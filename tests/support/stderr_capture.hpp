// Captures what the process writes to stderr (fd 2) while it lives: for the messages the loop
// logs itself (the default exception handler, debug-mode reports).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace test {

class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    saved_ = dup(2);
    std::snprintf(path_, sizeof path_, "/tmp/loop_stderr_XXXXXX");
    int fd = mkstemp(path_);
    dup2(fd, 2);
    close(fd);
  }
  ~StderrCapture() {
    restore();
    unlink(path_);
  }
  std::string text() {
    restore();
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    dup2(saved_, 2);
    close(saved_);
    saved_ = -1;
  }
  int saved_ = -1;
  char path_[64];
};

}  // namespace test

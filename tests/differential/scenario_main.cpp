// The main of every differential program (scenario.hpp): --list, or run one scenario.
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <loop/loop.hpp>
#include <system_error>

#include "scenario.hpp"

namespace diff {

std::string B(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out = "b";
  out += quote;
  for (unsigned char c : s) {
    if (c == static_cast<unsigned char>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

std::string exception_name(const std::exception& e) {
  if (dynamic_cast<const loop::CancelledError*>(&e)) return "CancelledError";
  if (dynamic_cast<const loop::InvalidStateError*>(&e)) return "InvalidStateError";
  if (dynamic_cast<const loop::TimeoutError*>(&e)) return "TimeoutError";
  if (dynamic_cast<const loop::SendfileNotAvailableError*>(&e)) return "SendfileNotAvailableError";
  if (dynamic_cast<const loop::IncompleteReadError*>(&e)) return "IncompleteReadError";
  if (dynamic_cast<const loop::LimitOverrunError*>(&e)) return "LimitOverrunError";
  // asyncio's "Multiple exceptions: ..." is a plain OSError, whatever the first errno.
  if (dynamic_cast<const loop::MultipleConnectErrors*>(&e)) return "OSError";
  if (auto* se = dynamic_cast<const std::system_error*>(&e)) {
    // Python raises the OSError subclass of the errno.
    switch (se->code().value()) {
      case ECONNRESET:
        return "ConnectionResetError";
      case ECONNREFUSED:
        return "ConnectionRefusedError";
      case ECONNABORTED:
        return "ConnectionAbortedError";
      case EPIPE:
        return "BrokenPipeError";
      case ENOENT:
        return "FileNotFoundError";
      case EEXIST:
        return "FileExistsError";
      case EPERM:
      case EACCES:
        return "PermissionError";
      case EAGAIN:
        return "BlockingIOError";
      case ESRCH:
        return "ProcessLookupError";
      case ECHILD:
        return "ChildProcessError";
      default:
        return "OSError";
    }
  }
  if (dynamic_cast<const std::invalid_argument*>(&e)) return "ValueError";
  if (dynamic_cast<const std::logic_error*>(&e)) return "logic_error";
  return "RuntimeError";
}

}  // namespace diff

int main(int argc, char** argv) {
  // Python ignores SIGPIPE at startup (a write to a closed pipe raises BrokenPipeError): the
  // C++ half does the same, so that both see EPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  auto& scenarios = diff::registry();
  if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
    for (auto& [name, body] : scenarios) std::printf("%s\n", name.c_str());
    return 0;
  }
  if (argc != 2 || !scenarios.count(argv[1])) {
    std::fprintf(stderr, "usage: %s --list | SCENARIO\n", argv[0]);
    return 2;
  }
  scenarios[argv[1]]();
  return 0;
}

// The options of EventLoop::subprocess_exec / subprocess_shell and create_subprocess_*
// (asyncio's stdin=, stdout=, stderr=, env=, cwd= keyword arguments).
#pragma once

#include <map>
#include <optional>
#include <string>

namespace loop {

/// Where one of the child's standard streams goes: asyncio's PIPE, DEVNULL, STDOUT (stderr
/// only), None (inherit the parent's), or a file descriptor.
struct Stdio {
  enum class Kind { inherit, pipe, devnull, to_stdout, fd };
  Kind kind = Kind::pipe;
  int fd = -1;  // for Kind::fd: the caller's; it stays open in the parent

  /// An fd the child gets as this stream (dup2'd; the parent's copy is left alone).
  static constexpr Stdio from_fd(int fd) { return Stdio{Kind::fd, fd}; }
  friend constexpr bool operator==(const Stdio&, const Stdio&) = default;
};

/// A new pipe; the parent's end becomes a pipe transport (asyncio.subprocess.PIPE).
inline constexpr Stdio PIPE{Stdio::Kind::pipe};
/// /dev/null (asyncio.subprocess.DEVNULL).
inline constexpr Stdio DEVNULL{Stdio::Kind::devnull};
/// stderr only: into the same place as stdout (asyncio.subprocess.STDOUT).
inline constexpr Stdio STDOUT{Stdio::Kind::to_stdout};
/// The parent's own stream (asyncio's None).
inline constexpr Stdio INHERIT{Stdio::Kind::inherit};

/// The fields are std_in/std_out/std_err because C may define stdin/stdout/stderr as macros.
/// All three default to PIPE, as loop.subprocess_exec's do (asyncio's create_subprocess_*
/// default to None: pass INHERIT for that).
struct SubprocessOptions {
  Stdio std_in = PIPE;
  Stdio std_out = PIPE;
  Stdio std_err = PIPE;
  /// The child's whole environment; nullopt inherits the parent's. The program is looked up
  /// in this environment's PATH (as Python's subprocess does).
  std::optional<std::map<std::string, std::string>> env;
  /// The child's working directory; nullopt keeps the parent's.
  std::optional<std::string> cwd;
};

}  // namespace loop

// Starting a child process: posix_spawn with its stdin/stdout/stderr set up as asked.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "loop/subprocess_options.hpp"

namespace loop::detail {

/// A started child: its pid and the parent's ends of the pipes asked for (-1 where none).
/// The pipe ends are close-on-exec and belong to the caller.
struct SpawnedChild {
  pid_t pid = -1;
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
};

/// Starts argv[0] (searched in the PATH of options.env, else of this process, unless it has
/// a '/'). Every fd of the parent other than the child's 0, 1, 2 is closed in the child (as
/// Python's close_fds=True); SIGPIPE is back to its default and no signal is blocked.
/// Failure: std::system_error with the errno, naming the program (or the cwd).
SpawnedChild spawn_child(const std::vector<std::string>& argv, const SubprocessOptions& options);

/// std::invalid_argument for options asyncio refuses (stdin=STDOUT, a negative fd, ...).
void check_subprocess_options(const SubprocessOptions& options);

}  // namespace loop::detail

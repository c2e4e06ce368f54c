// Calls that can raise SIGPIPE and have no MSG_NOSIGNAL (sendfile(2), write(2) to a pipe).
//
// The library never changes the process's SIGPIPE disposition (Python ignores SIGPIPE
// process-wide; a library must not). So SIGPIPE is blocked in this thread around the call,
// and one the call raised is taken back with sigtimedwait before unblocking - unless one was
// pending before (that one belongs to someone else). A SIGPIPE comes with a short result:
// EPIPE, or a partial count when the peer went away between two of the chunks one call
// copies (seen with sendfile(2) to a unix socket), so only those look for one.
// Cost: three system calls around a call that did all it was asked, four otherwise.
#pragma once

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <time.h>

#include <cerrno>
#include <cstddef>

namespace loop::detail {

template <class Call>
ssize_t call_without_sigpipe(std::size_t requested, Call&& call) {
  sigset_t pipe_set, old_set, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  sigemptyset(&pending);
  sigpending(&pending);
  bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  ssize_t n = call();
  int err = errno;
  const bool short_result = n < 0 ? err == EPIPE : static_cast<std::size_t>(n) < requested;
  if (short_result && !was_pending) {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  errno = err;
  return n;
}

}  // namespace loop::detail

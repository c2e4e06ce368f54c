// The threads libloop starts (the executor's workers, child watchers) take no asynchronous
// signals. A signal then goes to a thread of the application's, typically the one running the
// loop, as CPython delivers them to its main thread; never to a worker that may outlive the
// loop's handlers, where the signal's default action would end the process (a second Ctrl-C
// while a program exits after its loop closed).
#pragma once

#include <pthread.h>

#include <csignal>
#include <thread>
#include <utility>

namespace loop::detail {

template <class F>
std::thread start_signal_free_thread(F&& body) {
  sigset_t blocked, old;
  sigfillset(&blocked);
  // Faults stay deliverable: blocked, a crash would not be reported as one.
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS})
    sigdelset(&blocked, sig);
  pthread_sigmask(SIG_BLOCK, &blocked, &old);
  struct Restore {
    sigset_t* old;
    ~Restore() { pthread_sigmask(SIG_SETMASK, old, nullptr); }
  } restore{&old};
  return std::thread(std::forward<F>(body));  // a new thread starts with its creator's mask
}

}  // namespace loop::detail

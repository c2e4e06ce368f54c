// Children are reaped, and only ours: 200 children leave no zombie, another child of the
// process is not stolen, no fd leaks.
#include <dirent.h>
#include <spawn.h>
#include <sys/wait.h>

#include "subprocess_test_support.hpp"

extern char** environ;

namespace {

int open_fd_count() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the DIR's own fd
}

loop::Coroutine<int> run_one(int i) {
  auto proc =
      co_await loop::create_subprocess_exec("sh", sptest::args("-c", "echo $0", std::to_string(i)));
  auto [out, err] = co_await proc.communicate();
  co_return out == std::to_string(i) + "\n" && *proc.returncode() == 0 ? 1 : 0;
}

loop::Coroutine<int> run_many(int total, int batch) {
  int ok = 0;
  for (int start = 0; start < total; start += batch) {
    std::vector<loop::Future<int>> running;
    for (int i = start; i < start + batch && i < total; ++i)
      running.push_back(loop::get_running_loop().create_task(run_one(i)));
    for (int r : co_await loop::gather(running)) ok += r;
  }
  co_return ok;
}

}  // namespace

TEST_CASE("200 children started and reaped: no zombies, no fd leaks") {
  loop::EventLoop lp;
  // One child first: asio makes its reactor's fds (epoll, eventfd, timerfd) on first use.
  REQUIRE(lp.run_until_complete(run_many(1, 1)) == 1);
  int fds_before = open_fd_count();
  int ok = lp.run_until_complete(run_many(200, 20));
  CHECK(ok == 200);
  CHECK(sptest::zombie_children().empty());
  CHECK(open_fd_count() == fds_before);
}

TEST_CASE("another child of the process is not reaped by the loop") {
  // No SIGCHLD handler and no waitpid(-1): a child started by other code stays its to wait.
  pid_t other = -1;
  char* argv[] = {const_cast<char*>("sleep"), const_cast<char*>("0.3"), nullptr};
  REQUIRE(::posix_spawnp(&other, "sleep", nullptr, nullptr, argv, environ) == 0);
  loop::EventLoop lp;
  CHECK(lp.run_until_complete(run_many(10, 10)) == 10);
  int status = 0;
  CHECK(::waitpid(other, &status, 0) == other);
  CHECK(WIFEXITED(status));
}

TEST_CASE("a transport dropped with its child running: the child is killed and reaped") {
  {
    loop::EventLoop lp;
    auto [t, p] = lp.run_until_complete(
        lp.subprocess_exec([] { return std::make_shared<sptest::Recorder>(); }, "sleep", {"30"}));
    t->close();  // kills it
    p->lp = &lp;
    REQUIRE(sptest::run_bounded(lp));
    CHECK(t->get_returncode() == -9);
  }
  CHECK(sptest::zombie_children().empty());
}

// A program outside the project, built against an installed libloop.
#include <cstdio>
#include <loop/loop.hpp>

loop::Coroutine<int> answer() {
  co_await loop::sleep(0);
  co_return 42;
}

int main() {
  loop::EventLoop lp;
  int v = lp.run_until_complete(answer());
  lp.close();
  std::printf("answer %d\n", v);
  return v == 42 ? 0 : 1;
}

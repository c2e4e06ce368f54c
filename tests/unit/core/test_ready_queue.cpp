// The ready queue's ring (loop/ready_queue.hpp): FIFO through growth while wrapped around,
// handles released exactly once, a destructor that schedules during clear(), shrinking.
#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <utility>
#include <vector>

namespace {

using loop::detail::HandleRef;
using loop::detail::ReadyQueue;

struct Counted {
  static inline int alive = 0;
  Counted() { ++alive; }
  Counted(const Counted&) { ++alive; }
  ~Counted() { --alive; }
};

HandleRef numbered(std::vector<int>& out, int n) {
  return loop::detail::make_handle([&out, n, c = Counted{}] { out.push_back(n); });
}

}  // namespace

TEST_CASE("test_ready_queue_fifo_across_wrap_and_growth") {
  ReadyQueue q;
  std::vector<int> ran;
  int next = 0, expected = 0;
  // Keep the ring part-full and moving so that head sits mid-ring each time it has to grow.
  for (int round = 0; round < 40; ++round) {
    for (int i = 0; i < 100 + round * 37; ++i) q.push_back(numbered(ran, next++));
    for (int i = 0; i < 60 + round * 20 && !q.empty(); ++i) q.pop_front()->invoke();
  }
  while (!q.empty()) q.pop_front()->invoke();
  REQUIRE(ran.size() == static_cast<std::size_t>(next));
  bool in_order = true;
  for (int v : ran) in_order = in_order && v == expected++;
  CHECK(in_order);
  CHECK(Counted::alive == 0);
}

TEST_CASE("test_ready_queue_clear_releases_each_handle_once") {
  std::vector<int> ran;
  {
    ReadyQueue q;
    for (int i = 0; i < 1000; ++i) q.push_back(numbered(ran, i));
    CHECK(Counted::alive == 1000);
    q.clear();
    CHECK(q.empty());
    CHECK(Counted::alive == 0);
    for (int i = 0; i < 10; ++i) q.push_back(numbered(ran, i));
  }  // the destructor drops what is left
  CHECK(Counted::alive == 0);
  CHECK(ran.empty());
}

TEST_CASE("test_ready_queue_destructor_scheduling_during_clear") {
  // A handle whose destruction queues another one (a transport letting go, say): clear()
  // drops that one as well instead of walking freed slots.
  struct Requeue {
    ReadyQueue* q;
    int* dropped;
    int left;
    Requeue(ReadyQueue* q_, int* d, int l) : q(q_), dropped(d), left(l) {}
    Requeue(Requeue&& o) noexcept
        : q(std::exchange(o.q, nullptr)), dropped(o.dropped), left(o.left) {}
    ~Requeue() {
      if (!q) return;  // moved from
      ++*dropped;
      if (left > 0) q->push_back(loop::detail::make_handle(Requeue{q, dropped, left - 1}));
    }
    void operator()() {}
  };
  ReadyQueue q;
  int dropped = 0;
  q.push_back(loop::detail::make_handle(Requeue{&q, &dropped, 5}));
  q.clear();
  CHECK(q.empty());
  CHECK(dropped == 6);
}

TEST_CASE("test_ready_queue_shrinks_after_a_burst") {
  ReadyQueue q;
  std::vector<int> ran;
  for (int i = 0; i < 100000; ++i) q.push_back(numbered(ran, i));
  CHECK(q.capacity() >= 100000);
  q.shrink_if_idle();  // not idle: keeps everything
  CHECK(q.size() == 100000);
  while (!q.empty()) q.pop_front()->invoke();
  q.shrink_if_idle();
  CHECK(q.capacity() == 0);
  CHECK(ran.size() == 100000);
  q.push_back(numbered(ran, -1));  // still usable once shrunk
  q.pop_front()->invoke();
  CHECK(ran.back() == -1);
  CHECK(Counted::alive == 0);
}

TEST_CASE("test_ready_queue_loop_burst_runs_in_order") {
  loop::EventLoop lp;
  std::vector<int> order;
  for (int i = 0; i < 100000; ++i) lp.call_soon([&order, i] { order.push_back(i); });
  CHECK(lp.ready_count() == 100000);
  lp.call_soon([&] { lp.stop(); });
  lp.run_forever();
  REQUIRE(order.size() == 100000);
  CHECK(order.front() == 0);
  CHECK(order.back() == 99999);
  CHECK(lp.ready_count() == 0);
}

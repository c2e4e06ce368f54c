// The slab allocator behind handles and coroutine frames (event_loop/slab_heap.cpp): blocks
// apart and aligned, memory going back to the kernel after a burst, blocks freed on another
// thread, threads exiting with live blocks. Called directly, so these run under ASan and TSan
// too (where allocate_block itself uses operator new).
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "event_loop/slab_heap.hpp"
#include "loop/block_cache.hpp"
#include "loop/loop.hpp"
#include "sanitizers.hpp"

namespace slab = loop::detail::slab;

// Under the sanitizers handles come from operator new (loop/block_cache.cpp), not the slab.
#define LOOP_TEST_SLAB_HANDLES (!LOOP_UNDER_SANITIZER)

namespace {

bool aligned_to(const void* p, std::size_t a) {
  return reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

void fill(void* p, std::size_t size, unsigned char tag) {
  std::memset(p, tag, size);
}

bool holds(const void* p, std::size_t size, unsigned char tag) {
  const auto* c = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < size; ++i)
    if (c[i] != tag) return false;
  return true;
}

}  // namespace

TEST_CASE("slab blocks of every size are apart, writable and aligned") {
  for (std::size_t size = slab::kGranule; size <= slab::kMaxBlockSize; size += slab::kGranule) {
    std::vector<void*> blocks;
    for (int i = 0; i < 100; ++i) {
      void* p = slab::allocate(size);
      REQUIRE(aligned_to(p, size % 16 == 0 ? 16 : 8));
      fill(p, size, static_cast<unsigned char>(i));
      blocks.push_back(p);
    }
    for (int i = 0; i < 100; ++i)
      REQUIRE(holds(blocks[i], size, static_cast<unsigned char>(i)));  // no overlap
    for (void* p : blocks) slab::deallocate(p);
  }
}

TEST_CASE("slab reuses a freed block before carving a new one") {
  void* a = slab::allocate(48);
  void* b = slab::allocate(48);
  slab::deallocate(a);
  CHECK(slab::allocate(48) == a);
  slab::deallocate(a);
  slab::deallocate(b);
}

TEST_CASE("slab gives a burst's pages back to the kernel once its blocks are freed") {
  constexpr std::size_t kSize = 1016;  // a class nothing else in this program uses
  constexpr int kCount = 20000;        // about 310 pages
  std::size_t before = slab::pages_mapped();
  std::vector<void*> blocks;
  for (int i = 0; i < kCount; ++i) blocks.push_back(slab::allocate(kSize));
  std::size_t during = slab::pages_mapped();
  CHECK(during >= before + kCount * kSize / slab::kPageSize);
  for (void* p : blocks) slab::deallocate(p);  // first in, first out, as the ready queue does
  // The emptied pages wait for a trim (unmapping them one by one would slow the burst down).
  CHECK(slab::pages_mapped() >= during - 2);
  CHECK(slab::trim() == 0);
  // Kept: the class's last page and at most two empty pages for reuse.
  CHECK(slab::pages_mapped() <= before + 3);
}

TEST_CASE("slab trim gives back no more pages than asked") {
  constexpr std::size_t kSize = 1008;
  std::vector<void*> blocks;
  for (int i = 0; i < 10000; ++i) blocks.push_back(slab::allocate(kSize));
  for (void* p : blocks) slab::deallocate(p);
  std::size_t full = slab::pages_mapped();
  std::size_t surplus = slab::trim(10);
  CHECK(slab::pages_mapped() == full - 10);
  CHECK(surplus > 100);
  CHECK(slab::trim(surplus) == 0);
  CHECK(slab::pages_mapped() == full - 10 - surplus);
}

TEST_CASE("the event loop gives a burst's pages back before it sleeps") {
  std::size_t before = slab::pages_mapped();
  std::size_t after_burst = 0;
  {
    loop::EventLoop lp;
    long ran = 0;
    char payload[900] = {};  // about 1,000-byte handles: some 300 pages for 20,000
    for (int i = 0; i < 20000; ++i) lp.call_soon([&ran, payload] { ran += payload[0] + 1; });
    lp.call_soon([&] { after_burst = slab::pages_mapped(); });
    // Nothing else to do: the loop sleeps in its poll until another thread stops it.
    std::thread stopper([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      lp.call_soon_threadsafe([&] { lp.stop(); });
    });
    lp.run_forever();
    stopper.join();
    CHECK(ran == 20000);
    if (LOOP_TEST_SLAB_HANDLES) {
      CHECK(after_burst >= before + 250);  // the burst's pages were still there while it ran
      CHECK(slab::pages_mapped() <= before + 8);
    }
  }
}

TEST_CASE("slab blocks freed on another thread go back to the allocating thread's pages") {
  constexpr std::size_t kSize = 104;
  constexpr int kCount = 20000;  // about 32 pages a round
  std::size_t peak = 0;
  for (int round = 0; round < 5; ++round) {
    std::vector<void*> blocks;
    for (int i = 0; i < kCount; ++i) {
      blocks.push_back(slab::allocate(kSize));
      fill(blocks.back(), kSize, static_cast<unsigned char>(round));
    }
    if (round == 0) peak = slab::pages_mapped();
    // Without the hand-back each round would take another 32 pages.
    CHECK(slab::pages_mapped() <= peak + 1);
    bool intact = true;  // Catch's assertions are for the test's own thread
    std::thread([&] {
      for (void* p : blocks) {
        intact = intact && holds(p, kSize, static_cast<unsigned char>(round));
        slab::deallocate(p);
      }
    }).join();
    CHECK(intact);
  }
}

TEST_CASE("slab pages of an exited thread are unmapped when their last block is freed") {
  constexpr std::size_t kSize = 200;
  constexpr int kCount = 20000;  // about 62 pages
  std::size_t before = slab::pages_mapped();
  std::vector<void*> blocks;
  std::thread([&] {
    for (int i = 0; i < kCount; ++i) {
      blocks.push_back(slab::allocate(kSize));
      fill(blocks.back(), kSize, 7);
    }
    void* dropped = slab::allocate(kSize);  // freed at once: its page keeps living blocks
    slab::deallocate(dropped);
  }).join();
  CHECK(slab::pages_mapped() >= before + kCount * kSize / slab::kPageSize);  // orphaned
  for (void* p : blocks) {
    REQUIRE(holds(p, kSize, 7));
    slab::deallocate(p);
  }
  CHECK(slab::pages_mapped() == before);
}

namespace {

// Destroyed after the thread's heap when constructed before the thread's first allocation.
struct AllocatesWhenDestroyed {
  void* kept = nullptr;  // allocated while the heap lived, freed after it is gone
  bool* ok = nullptr;
  ~AllocatesWhenDestroyed() {
    void* p = slab::allocate(64);  // from the shared heap
    fill(p, 64, 1);
    slab::deallocate(p);
    if (kept) slab::deallocate(kept);
    if (ok) *ok = true;
  }
};

}  // namespace

TEST_CASE("slab serves and takes back blocks in a thread_local destructor after the heap is gone") {
  std::size_t before = slab::pages_mapped();
  bool ok = false;
  std::thread([&] {
    thread_local AllocatesWhenDestroyed late;
    late.ok = &ok;
    late.kept = slab::allocate(64);  // creates the thread's heap, after `late`
    fill(late.kept, 64, 2);
  }).join();
  CHECK(ok);
  // The thread's pages are gone; the shared heap keeps at most its page of the class.
  CHECK(slab::pages_mapped() <= before + 1);
}

TEST_CASE("slab blocks cross between two threads both ways") {
  // Each thread allocates, the other frees: the path call_soon_threadsafe's handles take.
  constexpr int kEach = 20000;
  std::mutex m;
  std::deque<void*> to_a, to_b;
  std::atomic<int> damaged{0};
  auto worker = [&](std::deque<void*>& mine, std::deque<void*>& theirs, unsigned char tag) {
    int sent = 0, freed = 0;
    while (sent < kEach || freed < kEach) {
      if (sent < kEach) {
        void* p = slab::allocate(72);
        fill(p, 72, tag);
        std::lock_guard<std::mutex> lock(m);
        theirs.push_back(p);
        ++sent;
      }
      void* got = nullptr;
      {
        std::lock_guard<std::mutex> lock(m);
        if (!mine.empty()) {
          got = mine.front();
          mine.pop_front();
        }
      }
      if (got) {
        if (!holds(got, 72, static_cast<unsigned char>(tag ^ 1))) ++damaged;
        slab::deallocate(got);
        ++freed;
      } else if (sent == kEach) {
        std::this_thread::yield();
      }
    }
  };
  std::thread a([&] { worker(to_a, to_b, 2); });
  std::thread b([&] { worker(to_b, to_a, 3); });
  a.join();
  b.join();
  CHECK(damaged == 0);
  CHECK(to_a.empty());
  CHECK(to_b.empty());
}

TEST_CASE("allocate_block serves any size and alignment") {
  struct Case {
    std::size_t size, align;
  };
  for (Case c : {Case{1, 1}, Case{56, 8}, Case{56, 16}, Case{1000, 8}, Case{1025, 8},
                 Case{4096, 16}, Case{40, 64}, Case{300, 128}}) {
    void* p = loop::detail::allocate_block(c.size, c.align);
    CHECK(aligned_to(p, c.align));
    fill(p, c.size, 9);
    CHECK(holds(p, c.size, 9));
    loop::detail::deallocate_block(p, c.size, c.align);
  }
}

// Another thread frees blocks across threads (taking the slab's mutex) without pause while
// this one forks; each child frees a block of that thread's pages too and exits. A child
// forked while the mutex was held would wait for it forever, unless fork takes it first.
TEST_CASE("slab frees across threads still work in a child forked while another thread frees") {
#if LOOP_UNDER_SANITIZER
  SUCCEED("fork under the sanitizers' runtimes is not tested");
#else
  constexpr std::size_t kSize = 64;
  constexpr int kForks = 100;
  // Blocks of the other thread's pages, for the children to free.
  std::vector<void*> theirs(kForks);
  std::atomic<bool> ready{false}, stop{false};
  std::mutex handover;
  std::vector<void*> mine_to_free;
  std::thread other([&] {
    for (auto& p : theirs) p = slab::allocate(kSize);
    ready = true;
    while (!stop.load()) {
      std::vector<void*> batch;
      {
        std::lock_guard<std::mutex> lock(handover);
        batch.swap(mine_to_free);
      }
      for (void* p : batch) slab::deallocate(p);  // this thread's blocks: freed across threads
    }
  });
  while (!ready.load()) std::this_thread::yield();
  int stuck = 0;
  for (int i = 0; i < kForks; ++i) {
    {
      std::lock_guard<std::mutex> lock(handover);
      for (int k = 0; k < 4096; ++k) mine_to_free.push_back(slab::allocate(kSize));
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      FAIL_CHECK("fork failed");  // not REQUIRE: the other thread must still be stopped
      break;
    }
    if (pid == 0) {
      slab::deallocate(theirs[i]);  // across threads: takes the mutex
      ::_exit(0);
    }
    int status = 0;
    bool done = false;
    for (int wait_ms = 0; wait_ms < 5000 && !done; ++wait_ms) {
      done = ::waitpid(pid, &status, WNOHANG) == pid;
      if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!done) {
      ++stuck;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    } else {
      CHECK(WIFEXITED(status));
    }
  }
  stop = true;
  other.join();
  for (void* p : mine_to_free) slab::deallocate(p);
  for (void* p : theirs) slab::deallocate(p);
  CHECK(stuck == 0);
#endif
}

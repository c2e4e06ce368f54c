// The slab allocator (see slab_heap.hpp for why and how).
#include "event_loop/slab_heap.hpp"

#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>

namespace loop::detail::slab {

namespace {

constexpr std::size_t kClasses = kMaxBlockSize / kGranule;
constexpr std::size_t kHeaderSize = 128;     // the Page header; blocks start after it
constexpr std::size_t kPagesPerRegion = 32;  // pages are mapped 2 MiB at a time
// Empty pages are kept for reuse, not unmapped at once: unmapping a page costs more than the
// 1,000 callbacks its blocks served (bench call_soon, a million callbacks: 0.024 -> 0.031 us
// each to run them when each emptied page was unmapped). trim() gives them back where it
// costs no one: the event loop calls it before it sleeps. A few are kept even then, so that
// a burst's edge does not map and unmap a page back and forth; and at most kMaxEmptyPages
// (64 MiB, the highest glibc raises its own trim threshold to) wait for a trim().
constexpr std::size_t kEmptyPagesKept = 2;
constexpr std::size_t kMaxEmptyPages = 1024;

struct FreeBlock {
  FreeBlock* next;
};

class Heap;

// The header at the start of each page.
struct Page {
  std::atomic<Heap*> owner{nullptr};  // null: orphaned (its thread exited)
  FreeBlock* free = nullptr;          // blocks given back on the owner's thread
  char* bump = nullptr;               // [bump, end): never handed out yet
  char* end = nullptr;
  Page* prev = nullptr;  // in the owner's list of this class's pages with room
  Page* next = nullptr;
  Page* all_prev = nullptr;  // in the owner's list of all its pages
  Page* all_next = nullptr;
  FreeBlock* thread_free = nullptr;  // given back on other threads (under g_mutex)
  Page* pending_next = nullptr;      // in the owner's pending list (under g_mutex)
  std::uint32_t used = 0;            // handed out and not back in `free`
  std::uint32_t block_size = 0;
  bool linked = false;   // in its class's list
  bool pending = false;  // in the owner's pending list (under g_mutex)

  std::size_t size_class() const { return block_size / kGranule - 1; }
  bool has_room() const { return free || bump + block_size <= end; }
};
static_assert(sizeof(Page) <= kHeaderSize);
static_assert(kHeaderSize % 16 == 0, "blocks of a multiple of 16 bytes are 16-byte aligned");

// Guards every page's thread_free/pending fields, the heaps' pending lists, orphaned pages'
// counts and the shared heap.
std::mutex g_mutex;
std::atomic<std::size_t> g_pages_mapped{0};

Page* page_of(void* block) {
  return reinterpret_cast<Page*>(reinterpret_cast<std::uintptr_t>(block) & ~(kPageSize - 1));
}

// `bytes` of fresh address space aligned to kPageSize (the kernel only aligns to 4 KiB: map
// one page more and cut off the ends).
char* map_aligned(std::size_t bytes) {
  std::size_t len = bytes + kPageSize;
  void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  auto start = reinterpret_cast<std::uintptr_t>(m);
  std::uintptr_t aligned = (start + kPageSize - 1) & ~(kPageSize - 1);
  if (aligned > start) ::munmap(m, aligned - start);
  std::uintptr_t tail = aligned + bytes;
  if (start + len > tail) ::munmap(reinterpret_cast<void*>(tail), start + len - tail);
  return reinterpret_cast<char*>(aligned);
}

void unmap_page(Page* p) {
  p->~Page();
  ::munmap(p, kPageSize);
  g_pages_mapped.fetch_sub(1, std::memory_order_relaxed);
}

class Heap {
 public:
  void* allocate(std::size_t cls) {
    if (Page* p = heads_[cls]) [[likely]] {
      if (FreeBlock* b = p->free) {
        p->free = b->next;
        ++p->used;
        return b;
      }
      if (p->bump + p->block_size <= p->end) {
        void* b = p->bump;
        p->bump += p->block_size;
        ++p->used;
        return b;
      }
    }
    return allocate_slow(cls);
  }

  // On the owner's thread (or, for the shared heap, under g_mutex).
  void free_local(Page* p, FreeBlock* b) {
    b->next = p->free;
    p->free = b;
    --p->used;
    after_free(p);
  }

  // A block of one of this heap's pages, freed on another thread; under g_mutex.
  void free_remote_locked(Page* p, FreeBlock* b) {
    b->next = p->thread_free;
    p->thread_free = b;
    if (!p->pending) {
      p->pending = true;
      p->pending_next = pending_;
      pending_ = p;
      has_pending_.store(true, std::memory_order_release);
    }
  }

  // Unmaps up to `max_pages` of the empty pages beyond kEmptyPagesKept; returns how many of
  // those remain.
  std::size_t trim(std::size_t max_pages) {
    constexpr std::size_t kBatch = 64;
    while (max_pages > 0 && empty_count_ > kEmptyPagesKept) {
      // Pages carved one after another are neighbours: unmap each run of them in one call.
      Page* batch[kBatch];
      std::size_t n = std::min({max_pages, empty_count_ - kEmptyPagesKept, kBatch});
      for (std::size_t i = 0; i < n; ++i) {
        batch[i] = empty_;
        empty_ = empty_->next;
        batch[i]->~Page();
      }
      empty_count_ -= n;
      max_pages -= n;
      std::sort(batch, batch + n);
      for (std::size_t i = 0; i < n;) {
        std::size_t j = i + 1;
        while (j < n && reinterpret_cast<char*>(batch[j]) ==
                            reinterpret_cast<char*>(batch[j - 1]) + kPageSize)
          ++j;
        ::munmap(batch[i], (j - i) * kPageSize);
        i = j;
      }
      g_pages_mapped.fetch_sub(n, std::memory_order_relaxed);
    }
    return empty_count_ > kEmptyPagesKept ? empty_count_ - kEmptyPagesKept : 0;
  }

  // At the thread's exit: gives back the pages without live blocks, orphans the others.
  void orphan_all() {
    std::lock_guard<std::mutex> lock(g_mutex);
    take_thread_frees_locked();
    for (Page* p = all_; p;) {
      Page* next = p->all_next;
      if (p->used == 0) {
        unmap_page(p);
      } else {
        p->owner.store(nullptr, std::memory_order_relaxed);
      }
      p = next;
    }
    all_ = nullptr;
    for (Page* p = empty_; p;) {
      Page* next = p->next;
      unmap_page(p);
      p = next;
    }
    empty_ = nullptr;
    if (region_next_ != region_end_) ::munmap(region_next_, region_end_ - region_next_);
    region_next_ = region_end_ = nullptr;
  }

 private:
  void* allocate_slow(std::size_t cls) {
    // The shared heap never has pending blocks (frees into it are direct), so this lock is
    // never taken while g_mutex is held.
    if (has_pending_.load(std::memory_order_acquire)) take_thread_frees();
    while (Page* p = heads_[cls]) {
      if (p->has_room()) return allocate(cls);
      unlink(p);  // full: it comes back when one of its blocks is freed
    }
    link(new_page(cls));
    return allocate(cls);
  }

  void after_free(Page* p) {
    if (!p->linked) link(p);
    // An empty page goes back, unless it is its class's last (a block freed and allocated
    // again at a page's edge would otherwise map and unmap it each time).
    if (p->used == 0 && (p->prev || p->next)) {
      unlink(p);
      release_page(p);
    }
  }

  void take_thread_frees() {
    std::lock_guard<std::mutex> lock(g_mutex);
    Page* list = take_thread_frees_locked();
    for (Page* p = list; p;) {
      Page* next = p->pending_next;
      p->pending_next = nullptr;
      after_free(p);
      p = next;
    }
  }

  // Moves the blocks freed by other threads to their pages' own free lists; returns the
  // pages that received some (linked through pending_next).
  Page* take_thread_frees_locked() {
    Page* list = pending_;
    pending_ = nullptr;
    has_pending_.store(false, std::memory_order_relaxed);
    for (Page* p = list; p; p = p->pending_next) {
      p->pending = false;
      while (FreeBlock* b = p->thread_free) {
        p->thread_free = b->next;
        b->next = p->free;
        p->free = b;
        --p->used;
      }
    }
    return list;
  }

  Page* new_page(std::size_t cls) {
    void* at;
    if (Page* e = empty_) {
      empty_ = e->next;
      --empty_count_;
      e->~Page();
      at = e;
    } else {
      if (region_next_ == region_end_) {
        region_next_ = map_aligned(kPagesPerRegion * kPageSize);
        region_end_ = region_next_ + kPagesPerRegion * kPageSize;
      }
      at = region_next_;
      region_next_ += kPageSize;
      g_pages_mapped.fetch_add(1, std::memory_order_relaxed);
    }
    auto* p = new (at) Page;
    p->owner.store(this, std::memory_order_relaxed);
    p->block_size = static_cast<std::uint32_t>((cls + 1) * kGranule);
    p->bump = static_cast<char*>(at) + kHeaderSize;
    p->end = static_cast<char*>(at) + kPageSize;
    p->all_next = all_;
    if (all_) all_->all_prev = p;
    all_ = p;
    return p;
  }

  // `p` is empty and unlinked.
  void release_page(Page* p) {
    if (p->all_prev) {
      p->all_prev->all_next = p->all_next;
    } else {
      all_ = p->all_next;
    }
    if (p->all_next) p->all_next->all_prev = p->all_prev;
    if (empty_count_ < kMaxEmptyPages) {
      p->next = empty_;
      empty_ = p;
      ++empty_count_;
    } else {
      unmap_page(p);
    }
  }

  void link(Page* p) {
    Page*& head = heads_[p->size_class()];
    p->prev = nullptr;
    p->next = head;
    if (head) head->prev = p;
    head = p;
    p->linked = true;
  }

  void unlink(Page* p) {
    Page*& head = heads_[p->size_class()];
    if (p->prev) {
      p->prev->next = p->next;
    } else {
      head = p->next;
    }
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = nullptr;
    p->linked = false;
  }

  Page* heads_[kClasses] = {};  // per class: the pages with room, the one to use first
  Page* all_ = nullptr;
  Page* empty_ = nullptr;  // kept for reuse (linked through next)
  std::size_t empty_count_ = 0;
  char* region_next_ = nullptr;  // the mapped region pages are carved from
  char* region_end_ = nullptr;
  Page* pending_ = nullptr;  // pages with blocks freed on other threads (under g_mutex)
  std::atomic<bool> has_pending_{false};
};

// For allocations on a thread whose own heap was destroyed already; under g_mutex. Never
// destroyed: blocks from it may be freed during the process's exit.
Heap& shared_heap() {
  static Heap* heap = new Heap;
  return *heap;
}

thread_local Heap* t_heap = nullptr;
thread_local bool t_heap_gone = false;

struct HeapOwner {
  Heap heap;
  ~HeapOwner() {
    heap.orphan_all();
    t_heap = nullptr;
    t_heap_gone = true;
  }
};

// fork() leaves the child with the forking thread only. Had another thread held g_mutex at
// that moment, the child's first block freed across threads would wait for it forever; so,
// as glibc does for malloc's arenas, fork waits for the mutex and both sides release it.
void lock_around_fork() {
  static std::once_flag once;
  std::call_once(once, [] {
    ::pthread_atfork([] { g_mutex.lock(); }, [] { g_mutex.unlock(); }, [] { g_mutex.unlock(); });
  });
}

Heap* make_thread_heap() {
  lock_around_fork();
  thread_local HeapOwner owner;
  t_heap = &owner.heap;
  return t_heap;
}

void free_elsewhere(Page* p, FreeBlock* b) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Heap* owner = p->owner.load(std::memory_order_relaxed);
  if (!owner) {
    if (--p->used == 0) unmap_page(p);
  } else if (owner == &shared_heap()) {
    owner->free_local(p, b);
  } else {
    owner->free_remote_locked(p, b);
  }
}

}  // namespace

void* allocate(std::size_t size) {
  std::size_t cls = size / kGranule - 1;
  Heap* heap = t_heap;
  if (!heap) [[unlikely]] {
    if (t_heap_gone) {
      std::lock_guard<std::mutex> lock(g_mutex);
      return shared_heap().allocate(cls);
    }
    heap = make_thread_heap();
  }
  return heap->allocate(cls);
}

void deallocate(void* block) noexcept {
  Page* p = page_of(block);
  auto* b = static_cast<FreeBlock*>(block);
  Heap* heap = t_heap;
  // Only this thread ever stores its own heap into a page's owner, so a relaxed read that
  // sees it is exact; anything else is settled under the mutex.
  if (heap && p->owner.load(std::memory_order_relaxed) == heap) [[likely]] {
    heap->free_local(p, b);
  } else {
    free_elsewhere(p, b);
  }
}

std::size_t trim(std::size_t max_pages) noexcept {
  return t_heap ? t_heap->trim(max_pages) : 0;
}

std::size_t pages_mapped() noexcept {
  return g_pages_mapped.load(std::memory_order_relaxed);
}

}  // namespace loop::detail::slab

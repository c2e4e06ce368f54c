// The per-thread cache of small freed blocks behind HandleImpl's and the coroutine frames'
// operator new/delete.
//
// A callback costs one handle, allocated by call_soon (or an I/O completion) and freed after it
// ran; an await costs a coroutine frame or two. malloc/free for those is a good part of their
// cost, so each thread keeps the blocks it frees, by size class, and hands them out again. The
// cache is bounded per class (kMaxCachedBytesPerClass): a burst of a million callbacks leaves a
// few thousand blocks behind, the rest go back to malloc. A block freed on another thread
// (call_soon_threadsafe's handles) joins that thread's cache; each thread frees its cache when it
// exits. Under AddressSanitizer (and TSan) the cache is off, so that a use after free of a handle
// or a frame is still caught.
#include "loop/block_cache.hpp"

#include <cstddef>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LOOP_BLOCK_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LOOP_BLOCK_CACHE 0
#endif
#endif
#ifndef LOOP_BLOCK_CACHE
#define LOOP_BLOCK_CACHE 1
#endif

namespace loop::detail {

#if LOOP_BLOCK_CACHE

namespace {

// 8-byte classes: malloc adds its own 8-byte header and rounds to 16, so a 72-byte handle
// asked for as 80 bytes would take a 96-byte chunk instead of 80.
constexpr std::size_t kGranule = 8;
constexpr std::size_t kClasses = 128;  // blocks of 8, 16, ... 1024 bytes
constexpr std::size_t kMaxCachedBytesPerClass = 64 * 1024;

struct FreeBlock {
  FreeBlock* next;
};

class BlockCache {
 public:
  ~BlockCache() {
    for (auto& c : classes_) {
      while (c.head) {
        FreeBlock* b = c.head;
        c.head = b->next;
        ::operator delete(b);
      }
    }
  }
  void* take(std::size_t cls) noexcept {
    Class& c = classes_[cls];
    FreeBlock* b = c.head;
    if (!b) return nullptr;
    c.head = b->next;
    --c.count;
    return b;
  }
  bool give(std::size_t cls, void* p) noexcept {
    Class& c = classes_[cls];
    if (c.count * (cls + 1) * kGranule >= kMaxCachedBytesPerClass) return false;
    auto* b = static_cast<FreeBlock*>(p);
    b->next = c.head;
    c.head = b;
    ++c.count;
    return true;
  }

 private:
  struct Class {
    FreeBlock* head = nullptr;
    std::size_t count = 0;
  };
  Class classes_[kClasses];
};

thread_local BlockCache t_cache;
// Whether t_cache may still be used: false once this thread's cache was destroyed (blocks
// freed by other thread_local destructors after it go straight to malloc).
thread_local bool t_cache_alive = false;

struct CacheGuard {
  CacheGuard() { t_cache_alive = true; }
  ~CacheGuard() { t_cache_alive = false; }
};

std::size_t size_class(std::size_t size) {
  return (size + kGranule - 1) / kGranule - 1;
}

}  // namespace

void* allocate_block(std::size_t size) {
  std::size_t cls = size_class(size);
  if (cls < kClasses && t_cache_alive)
    if (void* p = t_cache.take(cls)) return p;
  // Rounded up to the class size, so that any block of a class fits any request of it.
  return ::operator new(cls < kClasses ? (cls + 1) * kGranule : size);
}

void deallocate_block(void* p, std::size_t size) noexcept {
  std::size_t cls = size_class(size);
  if (cls < kClasses) {
    if (!t_cache_alive) {
      // The first use on this thread: the cache, then its guard, which is therefore destroyed
      // first at thread exit (from then on blocks go straight back to malloc).
      (void)t_cache;
      thread_local CacheGuard guard;
    }
    if (t_cache_alive && t_cache.give(cls, p)) return;
  }
  ::operator delete(p);
}

#else

void* allocate_block(std::size_t size) {
  return ::operator new(size);
}
void deallocate_block(void* p, std::size_t) noexcept {
  ::operator delete(p);
}

#endif

}  // namespace loop::detail

// The loop's ready queue (asyncio's _ready deque): a ring buffer of handle references.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

#include "loop/handle.hpp"

namespace loop::detail {

// A std::deque allocates a block per 64 entries as the queue moves and frees it behind; with a
// million call_soon callbacks that churn (and the free list consolidation it set off) was a
// quarter of their cost. A ring grows by doubling and then allocates nothing while callbacks
// run. After a burst it gives the memory back once the queue is empty (shrink_if_idle).
class ReadyQueue {
 public:
  ReadyQueue() = default;
  ReadyQueue(const ReadyQueue&) = delete;
  ReadyQueue& operator=(const ReadyQueue&) = delete;
  ~ReadyQueue() { clear(); }

  bool empty() const noexcept { return head_ == tail_; }
  std::size_t size() const noexcept { return tail_ - head_; }
  std::size_t capacity() const noexcept { return capacity_; }

  void push_back(HandleRef handle) {
    if (size() == capacity_) grow();
    slots_[tail_++ & (capacity_ - 1)] = handle.release();
  }
  /// The oldest handle; the queue must not be empty.
  HandleRef pop_front() noexcept {
    return HandleRef(slots_[head_++ & (capacity_ - 1)], HandleRef::Owned{});
  }
  /// Drops every handle, one at a time: a handle's destructor may schedule another (which is
  /// dropped too) or look at the queue.
  void clear() noexcept {
    while (!empty()) pop_front();
  }
  /// Frees a ring a burst left large, once nothing is queued.
  void shrink_if_idle() noexcept {
    if (capacity_ > kKeptCapacity && empty()) {
      slots_.reset();
      capacity_ = head_ = tail_ = 0;
    }
  }

 private:
  static constexpr std::size_t kInitialCapacity = 256;
  static constexpr std::size_t kKeptCapacity = 16384;

  // realloc: a large ring moves by remapping its pages (mremap), neither copied nor faulted in
  // again. The entries that had wrapped around to the front follow the old end.
  void grow() {
    std::size_t capacity = capacity_ ? capacity_ * 2 : kInitialCapacity;
    void* slots = std::realloc(slots_.get(), capacity * sizeof(HandleImpl*));
    if (!slots) throw std::bad_alloc();
    (void)slots_.release();
    slots_.reset(static_cast<HandleImpl**>(slots));
    std::size_t first = head_ & (capacity_ ? capacity_ - 1 : 0);
    std::size_t n = size();
    if (first + n > capacity_) {  // [first, capacity_) then [0, wrapped)
      std::size_t wrapped = first + n - capacity_;
      std::memcpy(slots_.get() + capacity_, slots_.get(), wrapped * sizeof(HandleImpl*));
    }
    capacity_ = capacity;
    head_ = first;
    tail_ = first + n;
  }

  struct Free {
    void operator()(HandleImpl** p) const noexcept { std::free(p); }
  };
  std::unique_ptr<HandleImpl*[], Free> slots_;  // capacity_ entries, a power of two
  std::size_t capacity_ = 0;
  std::size_t head_ = 0;  // free-running indices: slot = index & (capacity_ - 1)
  std::size_t tail_ = 0;
};

}  // namespace loop::detail

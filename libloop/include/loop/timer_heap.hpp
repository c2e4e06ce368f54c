// The loop's scheduled timers (asyncio's _scheduled): a binary min-heap on (when, id).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <new>

#include "loop/handle.hpp"

namespace loop::detail {

// An entry is 16 bytes: the deadline, which the comparisons read, and the handle, which holds
// one reference. The id that keeps equal deadlines first-in first-out is read from the handle
// only on a tie. The array grows with realloc, as the ready queue's: a large one moves by
// remapping its pages instead of being copied into fresh ones (each first touch of a page is
// a fault).
class TimerHeap {
 public:
  struct Entry {
    double when;
    HandleImpl* handle;  // one reference, released when the entry leaves
  };

  TimerHeap() = default;
  TimerHeap(const TimerHeap&) = delete;
  TimerHeap& operator=(const TimerHeap&) = delete;
  ~TimerHeap() {
    clear();
    std::free(entries_);
  }

  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  /// The earliest deadline; the heap must not be empty.
  double next_when() const noexcept { return entries_[0].when; }
  /// The timer due first; the heap must not be empty.
  HandleImpl& top() const noexcept { return *entries_[0].handle; }

  void push(double when, HandleRef handle) {
    if (size_ == capacity_) reserve(capacity_ ? capacity_ * 2 : kInitialCapacity);
    entries_[size_++] = Entry{when, handle.release()};
    std::push_heap(entries_, entries_ + size_, Later{});
  }
  /// Takes out the timer due first; the heap must not be empty.
  HandleRef pop() noexcept {
    std::pop_heap(entries_, entries_ + size_, Later{});
    return HandleRef(entries_[--size_].handle, HandleRef::Owned{});
  }

  /// Calls f(HandleImpl&) on each timer, in no particular order.
  template <class F>
  void for_each(F f) const {
    for (std::size_t i = 0; i < size_; ++i) f(*entries_[i].handle);
  }

  /// Drops every timer, one at a time: a handle's destructor may schedule another (which is
  /// dropped too).
  void clear() noexcept {
    while (size_ > 0) entries_[--size_].handle->release();
  }

  /// Rebuilds the heap from the timers not cancelled (asyncio's rebuild when most are);
  /// `live` is how many that leaves, for the new array's size. The cancelled ones are marked
  /// no longer scheduled and let go of.
  void remove_cancelled(std::size_t live) {
    // The old entries are taken out first: letting go of a handle may run a destructor that
    // schedules a timer, which lands in the new array.
    Entry* old = entries_;
    std::size_t n = size_;
    entries_ = nullptr;
    size_ = capacity_ = 0;
    reserve(std::max(live, kInitialCapacity));
    // Whether a timer was cancelled is in its handle, one cache miss each: 100,000 of them
    // made this rebuild take milliseconds, and the timers due meanwhile that late. Asking for
    // the handles a few entries ahead lets those misses overlap (bench timers_cancel: the
    // rebuild of 100,000 took 5.5 ms; the lateness after the start, median 8.5 -> 6.9 ms).
    constexpr std::size_t kPrefetchAhead = 16;
    for (std::size_t i = 0; i < std::min(kPrefetchAhead, n); ++i) __builtin_prefetch(old[i].handle);
    for (std::size_t i = 0; i < n; ++i) {
      if (i + kPrefetchAhead < n) __builtin_prefetch(old[i + kPrefetchAhead].handle);
      HandleImpl* h = old[i].handle;
      if (h->cancelled) {
        h->scheduled = false;
        h->release();  // while its cache line is at hand
      } else {
        if (size_ == capacity_) reserve(capacity_ * 2);
        entries_[size_++] = old[i];
      }
    }
    std::free(old);
    std::make_heap(entries_, entries_ + size_, Later{});
  }

 private:
  static constexpr std::size_t kInitialCapacity = 64;

  // Min-heap order on (when, id): the earliest deadline first, first-in first-out among equal
  // deadlines (ids grow with every schedule).
  struct Later {
    bool operator()(const Entry& a, const Entry& b) const noexcept {
      if (a.when != b.when) return a.when > b.when;
      return a.handle->id > b.handle->id;
    }
  };

  void reserve(std::size_t capacity) {
    void* entries = std::realloc(entries_, capacity * sizeof(Entry));
    if (!entries) throw std::bad_alloc();
    entries_ = static_cast<Entry*>(entries);
    capacity_ = capacity;
  }

  Entry* entries_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace loop::detail

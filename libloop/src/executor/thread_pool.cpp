// ThreadPoolExecutor: threads started on demand up to max_workers, as Python's.
#include <algorithm>
#include <stdexcept>

#include "event_loop/slab_heap.hpp"
#include "executor/signal_free_thread.hpp"
#include "loop/executor.hpp"

namespace loop {

std::size_t ThreadPoolExecutor::default_max_workers() {
  std::size_t cpus = std::max(1u, std::thread::hardware_concurrency());
  return std::min<std::size_t>(32, cpus + 4);
}

ThreadPoolExecutor::ThreadPoolExecutor(std::size_t max_workers) : max_workers_(max_workers) {
  if (max_workers_ == 0) throw std::invalid_argument("max_workers must be greater than 0");
}

ThreadPoolExecutor::~ThreadPoolExecutor() {
  shutdown(true);
}

void ThreadPoolExecutor::submit(std::function<void()> work) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (shutdown_) throw std::runtime_error("cannot schedule new futures after shutdown");
  queue_.push_back(std::move(work));
  // A new thread only when none is idle (Python's _adjust_thread_count).
  if (idle_ == 0 && threads_.size() < max_workers_)
    threads_.push_back(detail::start_signal_free_thread([this] { worker(); }));
  else
    cv_.notify_one();
}

void ThreadPoolExecutor::shutdown(bool wait) {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    shutdown_ = true;
    if (wait) threads = std::move(threads_);
  }
  cv_.notify_all();
  for (auto& t : threads) t.join();
}

void ThreadPoolExecutor::worker() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    ++idle_;
    cv_.wait(lock, [this] { return shutdown_ || !queue_.empty(); });
    --idle_;
    if (queue_.empty()) return;  // shut down and drained
    auto work = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    work();
    work = nullptr;        // destroy captured state before taking the lock again
    detail::slab::trim();  // e.g. the pages of call_soon_threadsafe handles the loop freed
    lock.lock();
  }
}

}  // namespace loop

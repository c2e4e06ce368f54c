// Executors for run_in_executor (concurrent.futures' Executor and ThreadPoolExecutor).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace loop {

class Executor {
 public:
  virtual ~Executor() = default;
  /// Runs `work` some time later, on some other thread. Throws std::runtime_error after shutdown.
  virtual void submit(std::function<void()> work) = 0;
  /// Refuses new work; with wait=true also waits for queued and running work to finish.
  virtual void shutdown(bool wait) = 0;
};

/// A pool of threads started on demand, up to max_workers.
class ThreadPoolExecutor final : public Executor {
 public:
  /// ThreadPoolExecutor's default: min(32, hardware threads + 4).
  static std::size_t default_max_workers();

  explicit ThreadPoolExecutor(std::size_t max_workers = default_max_workers());
  ~ThreadPoolExecutor() override;  // shutdown(wait=true)

  void submit(std::function<void()> work) override;
  void shutdown(bool wait) override;
  std::size_t max_workers() const { return max_workers_; }

 private:
  void worker();

  std::size_t max_workers_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;
  bool shutdown_ = false;
};

}  // namespace loop

// A small persistent fork-join pool: parallel_for splits [0, n) into chunks run by the pool's
// threads and the calling thread. Results must be written by index so that they do not depend on
// scheduling. The caller claims chunks too and never waits for a worker that has not started:
// on a loaded machine a sleeping worker costs nothing, and in a forked child (no worker threads)
// the caller simply runs every chunk itself.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dsac_native {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);  // total threads including the caller; <= 0: all cores
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // A process-wide pool of `num_threads` threads (<= 0: all cores), created on first use and kept.
  static ThreadPool& shared(int num_threads);

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // Runs fn(begin, end) over chunks of [0, n). Concurrent callers are serialised per pool; a
  // caller that finds the pool busy runs its whole range itself.
  void parallel_for(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn);

 private:
  void worker_loop();
  void run_chunks(std::uint64_t generation);
  void run_range(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn);

  // ticket_ = generation (24 bits) | n (20 bits) | next index (20 bits): a chunk is claimed by a
  // compare-exchange, so a worker that wakes up late can never claim a chunk of another job.
  static constexpr int kIndexBits = 20;
  static constexpr std::uint64_t kIndexMask = (1ULL << kIndexBits) - 1;
  static constexpr std::size_t kMaxJob = 1u << (kIndexBits - 1);

  std::vector<std::thread> workers_;
  std::mutex mutex_, call_mutex_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(std::size_t, std::size_t)>* job_ = nullptr;
  std::atomic<std::uint64_t> ticket_{0};
  std::atomic<std::size_t> done_{0};
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace dsac_native

#include "dsac_native/thread_pool.hpp"

#include <algorithm>
#include <map>
#include <memory>

namespace dsac_native {

namespace {
std::size_t chunk_size(std::size_t n, int threads) {
  // small chunks: a worker preempted while holding one stalls the join only briefly
  return std::max<std::size_t>(1, n / (16 * static_cast<std::size_t>(threads)));
}
}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& w : workers_) w.join();
}

ThreadPool& ThreadPool::shared(int num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  static std::mutex registry_mutex;
  // never destroyed: joining threads from static destructors at interpreter exit is fragile
  static auto* registry = new std::map<int, std::unique_ptr<ThreadPool>>();
  std::lock_guard<std::mutex> lock(registry_mutex);
  auto& pool = (*registry)[num_threads];
  if (!pool) pool = std::make_unique<ThreadPool>(num_threads);
  return *pool;
}

void ThreadPool::run_chunks(std::uint64_t generation) {
  const std::uint64_t gen_bits = generation << (2 * kIndexBits);
  for (;;) {
    std::uint64_t s = ticket_.load(std::memory_order_acquire);
    if ((s >> (2 * kIndexBits)) != (gen_bits >> (2 * kIndexBits))) return;
    const std::size_t n = (s >> kIndexBits) & kIndexMask, begin = s & kIndexMask;
    if (begin >= n) return;
    const std::size_t end = std::min(begin + chunk_size(n, size()), n);
    if (!ticket_.compare_exchange_weak(s, s + (end - begin), std::memory_order_acq_rel)) continue;
    (*job_)(begin, end);  // valid: this job cannot finish before our chunk is done
    if (done_.fetch_add(end - begin, std::memory_order_acq_rel) + (end - begin) == n) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_cv_.notify_all();
    }
  }
}

void ThreadPool::worker_loop() {
  std::uint64_t seen = 0;
  for (;;) {
    std::unique_lock<std::mutex> lock(mutex_);
    start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    lock.unlock();
    run_chunks(seen & ((1ULL << (64 - 2 * kIndexBits)) - 1));
  }
}

void ThreadPool::run_range(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn) {
  std::uint64_t gen;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    done_.store(0, std::memory_order_relaxed);
    gen = ++generation_ & ((1ULL << (64 - 2 * kIndexBits)) - 1);
    ticket_.store((gen << (2 * kIndexBits)) | (static_cast<std::uint64_t>(n) << kIndexBits),
                  std::memory_order_release);
  }
  start_cv_.notify_all();
  run_chunks(gen);
  std::unique_lock<std::mutex> lock(mutex_);
  done_cv_.wait(lock, [&] { return done_.load(std::memory_order_acquire) == n; });
  job_ = nullptr;
}

void ThreadPool::parallel_for(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn) {
  if (n == 0) return;
  std::unique_lock<std::mutex> call(call_mutex_, std::try_to_lock);
  if (workers_.empty() || n == 1 || !call.owns_lock()) {
    fn(0, n);
    return;
  }
  for (std::size_t begin = 0; begin < n; begin += kMaxJob) {
    const std::size_t count = std::min(kMaxJob, n - begin);
    if (begin == 0 && count == n) {
      run_range(n, fn);
    } else {
      const std::function<void(std::size_t, std::size_t)> shifted = [&](std::size_t b, std::size_t e) {
        fn(begin + b, begin + e);
      };
      run_range(count, shifted);
    }
  }
}

}  // namespace dsac_native

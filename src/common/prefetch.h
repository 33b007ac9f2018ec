#pragma once
// Work ahead of the consumer: a background thread produces items in order, up to `depth` ahead, while
// the caller computes on the previous ones (decoding images while the network runs).
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace segnet {

template <class T>
class Prefetcher {
 public:
  // `produce` is called on one background thread, in order, until it returns nullopt or throws.
  Prefetcher(std::function<std::optional<T>()> produce, size_t depth)
      : produce_(std::move(produce)), depth_(depth < 1 ? 1 : depth), worker_([this] { run(); }) {}
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    worker_.join();
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // The next item; false once the producer is done. Rethrows the producer's error, in its place.
  bool next(T& item) {
    const auto start = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return !ready_.empty() || done_; });
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (ready_.empty()) {
      if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
      return false;
    }
    item = std::move(ready_.front());
    ready_.pop_front();
    changed_.notify_all();
    return true;
  }
  // Seconds the caller spent blocked in next().
  double wait_seconds() const { return wait_seconds_; }

 private:
  void run() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [this] { return ready_.size() < depth_ || stopping_; });
        if (stopping_) break;
      }
      std::optional<T> item;
      std::exception_ptr error;
      try {
        item = produce_();
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (item) {
        ready_.push_back(std::move(*item));
      } else {
        error_ = error;
        break;
      }
      changed_.notify_all();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    changed_.notify_all();
  }

  std::function<std::optional<T>()> produce_;
  size_t depth_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<T> ready_;
  std::exception_ptr error_;
  bool done_ = false, stopping_ = false;
  double wait_seconds_ = 0;
  std::thread worker_;  // last: starts once everything above exists
};

}  // namespace segnet

#pragma once
// Batches of a dataset for training: shuffled, flipped, decoded ahead of the network.
#include <segnet/data.h>

#include "common/prefetch.h"

#include <memory>
#include <vector>

namespace segnet {

// Batches at a fixed size. The order and flips of an epoch depend only on its seed, so a resumed run
// sees exactly the batches an uninterrupted one would.
class BatchLoader {
 public:
  struct Options {
    Size2 size;
    int64_t batch_size = 1;
    bool shuffle = false;
    bool flip = false;     // random horizontal flip
    int64_t prefetch = 4;  // batches decoded ahead
    // Keep resized samples in memory after their first decoding, unless they would take more
    // than 4 GiB (3 image bytes + 1 label byte per pixel).
    bool cache = true;
  };
  BatchLoader(std::vector<SamplePaths> samples, LabelSpec spec, Normalization norm, Options options);

  int64_t batches_per_epoch() const;
  const std::vector<SamplePaths>& samples() const { return samples_; }

  class Epoch {
   public:
    // False once the epoch is exhausted. Rethrows a decoding error of the batch.
    bool next(Batch& batch) { return batches_->next(batch); }
    // Seconds the caller spent blocked waiting for a batch.
    double wait_seconds() const { return batches_->wait_seconds(); }

   private:
    friend class BatchLoader;
    std::unique_ptr<Prefetcher<Batch>> batches_;
  };
  // Must not overlap with another epoch of the same loader (they share the cache).
  Epoch epoch(uint64_t seed) const;

 private:
  struct Plan {
    std::vector<size_t> indices;
    std::vector<bool> flips;
  };
  Batch load(const Plan& plan) const;
  std::vector<SamplePaths> samples_;
  LabelSpec spec_;
  Normalization norm_;
  Options options_;
  // One slot per sample, filled by the one thread that decodes an epoch.
  mutable std::vector<Sample> cache_;
};

}  // namespace segnet

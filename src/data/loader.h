#pragma once
// Batches of a dataset for training: shuffled, augmented, decoded ahead of the network.
#include <segnet/data.h>

#include "common/prefetch.h"

#include <memory>
#include <vector>

namespace segnet {

// One optimizer step's micro-batches on this process, and how many images the step has on all.
struct LoaderStep {
  std::vector<Batch> micro_batches;
  int64_t images = 0;
};

// Steps of batches at a fixed size. An epoch's order and augmentations depend only on its seed, and a step is
// cut into `slots` micro-batches the same way whichever process loads which: a resumed run sees exactly
// the batches an uninterrupted one would, and K processes the ones one process accumulating K would.
class BatchLoader {
 public:
  struct Options {
    Size2 size;
    int64_t batch_size = 1;  // images per micro-batch
    // Micro-batches per step over all processes (accumulate x processes), of which this process loads
    // first_slot .. first_slot + local_slots - 1. A last step with fewer images than slots is dropped;
    // one with fewer than slots x batch_size is shared out as evenly as possible.
    int64_t slots = 1;
    int64_t first_slot = 0;
    int64_t local_slots = 1;
    bool shuffle = false;
    AugmentOptions augment = augment_preset(AugmentPreset::None);
    std::optional<InputRange> input_range;  // for 16-bit images (read_image)
    cv::Scalar pad_rgb;    // the image's colour where augmentation pads it (the dataset's mean)
    int64_t prefetch = 4;  // steps decoded ahead
    // Keep resized samples in memory after their first decoding, unless they would take more
    // than 4 GiB (3 image bytes + 1 label byte per pixel). They are kept at max_scale times the
    // training size (at most their own), so that scaling up does not lose detail.
    bool cache = true;
  };
  BatchLoader(std::vector<SamplePaths> samples, LabelSpec spec, Normalization norm, Options options);

  int64_t steps_per_epoch() const;
  const std::vector<SamplePaths>& samples() const { return samples_; }

  class Epoch {
   public:
    // False once the epoch is exhausted. Rethrows a decoding error of the step.
    bool next(LoaderStep& step) { return steps_->next(step); }
    // Seconds the caller spent blocked waiting for a step.
    double wait_seconds() const { return steps_->wait_seconds(); }

   private:
    friend class BatchLoader;
    std::unique_ptr<Prefetcher<LoaderStep>> steps_;
  };
  // Must not overlap with another epoch of the same loader (they share the cache).
  Epoch epoch(uint64_t seed) const;

 private:
  struct Plan {
    std::vector<std::vector<size_t>> micro_batches;  // sample indices
    int64_t images = 0;
  };
  Batch load(const std::vector<size_t>& indices, const std::vector<uint64_t>& seeds) const;
  Sample decoded(size_t index) const;
  std::vector<SamplePaths> samples_;
  LabelSpec spec_;
  Normalization norm_;
  Options options_;
  // One slot per sample, filled by the one thread that decodes an epoch.
  mutable std::vector<Sample> cache_;
};

}  // namespace segnet

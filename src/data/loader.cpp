#include "data/loader.h"

#include <opencv2/core.hpp>
#include <torch/torch.h>

#include <numeric>
#include <random>

namespace segnet {

BatchLoader::BatchLoader(std::vector<SamplePaths> samples, LabelSpec spec, Normalization norm, Options options)
    : samples_(std::move(samples)), spec_(std::move(spec)), norm_(norm), options_(options) {
  const double bytes = 4.0 * options_.size.height * options_.size.width * static_cast<double>(samples_.size());
  options_.cache = options_.cache && bytes <= 4.0 * (1 << 30);
  if (options_.cache) cache_.resize(samples_.size());
}

int64_t BatchLoader::steps_per_epoch() const {
  const int64_t n = static_cast<int64_t>(samples_.size()), step = options_.slots * options_.batch_size;
  return n / step + (n % step >= options_.slots ? 1 : 0);
}

BatchLoader::Epoch BatchLoader::epoch(uint64_t seed) const {
  const size_t n = samples_.size(), slots = options_.slots, step_size = slots * options_.batch_size;
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  if (options_.shuffle) std::shuffle(order.begin(), order.end(), rng);
  auto flips = std::make_shared<std::vector<bool>>(n);  // by sample
  for (size_t i : order) (*flips)[i] = options_.flip && (rng() & 1);
  auto plans = std::make_shared<std::vector<Plan>>();
  for (size_t begin = 0; begin < n; begin += step_size) {
    const size_t images = std::min(step_size, n - begin);
    if (images < slots) break;
    Plan plan;
    plan.images = static_cast<int64_t>(images);
    for (size_t s = options_.first_slot; s < size_t(options_.first_slot + options_.local_slots); ++s)
      plan.micro_batches.emplace_back(order.begin() + begin + s * images / slots,
                                      order.begin() + begin + (s + 1) * images / slots);
    plans->push_back(std::move(plan));
  }
  Epoch epoch;
  epoch.steps_ = std::make_unique<Prefetcher<LoaderStep>>(
      [this, plans, flips, next = size_t(0)]() mutable -> std::optional<LoaderStep> {
        if (next == plans->size()) return std::nullopt;
        const Plan& plan = (*plans)[next++];
        LoaderStep step;
        step.images = plan.images;
        for (const auto& indices : plan.micro_batches) step.micro_batches.push_back(load(indices, *flips));
        return step;
      },
      static_cast<size_t>(options_.prefetch));
  return epoch;
}

Batch BatchLoader::load(const std::vector<size_t>& indices, const std::vector<bool>& flips) const {
  std::vector<torch::Tensor> images, labels;
  for (size_t i : indices) {
    Sample s = options_.cache && !cache_[i].image.empty()
                   ? cache_[i]
                   : resize_sample(read_sample(samples_[i], spec_), options_.size);
    if (options_.cache) cache_[i] = s;
    if (flips[i]) {  // into new buffers: the cached sample stays as it is
      Sample flipped;
      cv::flip(s.image, flipped.image, 1);
      cv::flip(s.label, flipped.label, 1);
      s = flipped;
    }
    images.push_back(image_to_tensor(s.image, norm_));
    labels.push_back(label_tensor(s.label).to(torch::kLong));
  }
  return {torch::stack(images), torch::stack(labels)};
}

}  // namespace segnet

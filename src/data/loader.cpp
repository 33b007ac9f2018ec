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

int64_t BatchLoader::batches_per_epoch() const {
  const int64_t n = static_cast<int64_t>(samples_.size());
  return (n + options_.batch_size - 1) / options_.batch_size;
}

BatchLoader::Epoch BatchLoader::epoch(uint64_t seed) const {
  std::vector<size_t> order(samples_.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  if (options_.shuffle) std::shuffle(order.begin(), order.end(), rng);
  auto plans = std::make_shared<std::vector<Plan>>();
  for (size_t i = 0; i < order.size(); i += options_.batch_size) {
    Plan plan;
    for (size_t j = i; j < std::min(order.size(), i + options_.batch_size); ++j) {
      plan.indices.push_back(order[j]);
      plan.flips.push_back(options_.flip && (rng() & 1));
    }
    plans->push_back(std::move(plan));
  }
  Epoch epoch;
  epoch.batches_ = std::make_unique<Prefetcher<Batch>>(
      [this, plans, next = size_t(0)]() mutable -> std::optional<Batch> {
        if (next == plans->size()) return std::nullopt;
        return load((*plans)[next++]);
      },
      static_cast<size_t>(options_.prefetch));
  return epoch;
}

Batch BatchLoader::load(const Plan& plan) const {
  std::vector<torch::Tensor> images, labels;
  for (size_t k = 0; k < plan.indices.size(); ++k) {
    const size_t i = plan.indices[k];
    Sample s = options_.cache && !cache_[i].image.empty()
                   ? cache_[i]
                   : resize_sample(read_sample(samples_[i], spec_), options_.size);
    if (options_.cache) cache_[i] = s;
    if (plan.flips[k]) {  // into new buffers: the cached sample stays as it is
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

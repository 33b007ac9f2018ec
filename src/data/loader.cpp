#include "data/loader.h"

#include <opencv2/core.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace segnet {

BatchLoader::BatchLoader(std::vector<SamplePaths> samples, LabelSpec spec, Normalization norm, Options options)
    : samples_(std::move(samples)), spec_(std::move(spec)), norm_(norm), options_(options) {
  validate(options_.augment);
  const double kept = std::max(1.0, options_.augment.max_scale);
  const double bytes = 4.0 * kept * kept * options_.size.height * options_.size.width * static_cast<double>(samples_.size());
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
  auto seeds = std::make_shared<std::vector<uint64_t>>(n);  // of each sample's augmentation
  for (size_t i : order) (*seeds)[i] = rng();
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
      [this, plans, seeds, next = size_t(0)]() mutable -> std::optional<LoaderStep> {
        if (next == plans->size()) return std::nullopt;
        const Plan& plan = (*plans)[next++];
        LoaderStep step;
        step.images = plan.images;
        for (const auto& indices : plan.micro_batches) step.micro_batches.push_back(load(indices, *seeds));
        return step;
      },
      static_cast<size_t>(options_.prefetch));
  return epoch;
}

Sample BatchLoader::decoded(size_t index) const {
  if (options_.cache && !cache_[index].image.empty()) return cache_[index];
  const Sample full = read_sample(samples_[index], spec_, options_.input_range);
  const double kept = std::max(1.0, options_.augment.max_scale);
  const Sample s = resize_sample(full, {std::min<int64_t>(full.image.rows, std::llround(options_.size.height * kept)),
                                        std::min<int64_t>(full.image.cols, std::llround(options_.size.width * kept))});
  if (options_.cache) cache_[index] = s;
  return s;
}

Batch BatchLoader::load(const std::vector<size_t>& indices, const std::vector<uint64_t>& seeds) const {
  std::vector<torch::Tensor> images, labels;
  for (size_t i : indices) {
    const Sample s = augment_sample(decoded(i), options_.size, options_.augment, seeds[i], options_.pad_rgb);
    images.push_back(image_to_tensor(s.image, norm_));
    labels.push_back(label_tensor(s.label).to(torch::kLong));
  }
  return {torch::stack(images), torch::stack(labels)};
}

}  // namespace segnet

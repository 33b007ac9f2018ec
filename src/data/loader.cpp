#include <segnet/data.h>

#include <opencv2/core.hpp>
#include <torch/torch.h>

#include <chrono>
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
  std::vector<Epoch::Plan> plans;
  for (size_t i = 0; i < order.size(); i += options_.batch_size) {
    Epoch::Plan plan;
    for (size_t j = i; j < std::min(order.size(), i + options_.batch_size); ++j) {
      plan.indices.push_back(order[j]);
      plan.flips.push_back(options_.flip && (rng() & 1));
    }
    plans.push_back(std::move(plan));
  }
  return Epoch(this, std::move(plans));
}

Batch BatchLoader::load(const Epoch::Plan& plan) const {
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
    labels.push_back(torch::from_blob(s.label.data, {s.label.rows, s.label.cols}, torch::kUInt8).to(torch::kLong));
  }
  return {torch::stack(images), torch::stack(labels)};
}

BatchLoader::Epoch::Epoch(const BatchLoader* loader, std::vector<Plan> plans)
    : loader_(loader), plans_(std::move(plans)) {
  while (launched_ < plans_.size() && pending_.size() < static_cast<size_t>(loader_->options_.prefetch)) launch();
}

void BatchLoader::Epoch::launch() {
  // Captures no `this`: an Epoch may be moved while its batches decode (the plans' storage stays put).
  const Plan* plan = &plans_[launched_++];
  pending_.push_back(std::async(std::launch::async, [loader = loader_, plan] { return loader->load(*plan); }));
}

bool BatchLoader::Epoch::next(Batch& batch) {
  if (pending_.empty()) return false;
  const auto start = std::chrono::steady_clock::now();
  batch = pending_.front().get();
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  pending_.pop_front();
  if (launched_ < plans_.size()) launch();
  return true;
}

}  // namespace segnet

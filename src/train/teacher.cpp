#include "train/teacher.h"

#include <segnet/error.h>
#include <segnet/predict.h>
#include <segnet/runtime.h>
#include <segnet/segmenter.h>

#include "train/augment.h"
#include "train/schedule.h"

#include <torch/torch.h>

#include <optional>

namespace segnet {

namespace {

// Running statistics must describe real images at inference, not strong views: while alive, batch
// norm layers normalise with the batch's statistics but leave their running averages as they are.
class FrozenRunningStatistics {
 public:
  explicit FrozenRunningStatistics(SegNet& model) {
    for (const auto& module : model->modules(/*include_self=*/false))
      if (auto* bn = module->as<torch::nn::BatchNorm2dImpl>()) {
        saved_.emplace_back(bn, bn->options.momentum());
        bn->options.momentum(0.0);  // running = (1 - 0) * running + 0 * batch
      }
  }
  ~FrozenRunningStatistics() {
    for (auto& [bn, momentum] : saved_) bn->options.momentum(momentum);
  }
  FrozenRunningStatistics(const FrozenRunningStatistics&) = delete;
  FrozenRunningStatistics& operator=(const FrozenRunningStatistics&) = delete;

 private:
  std::vector<std::pair<torch::nn::BatchNorm2dImpl*, c10::optional<double>>> saved_;
};

}  // namespace

torch::Tensor pseudo_label_loss(SegNet& student, PseudoLabelStep& p, const Batch& labeled, const Objective& objective,
                                Precision precision, torch::Device device) {
  const auto format = fastest_memory_format(device, precision);
  const auto weak = p.unlabeled.images.to(device);
  torch::Tensor targets;
  {
    torch::NoGradGuard no_grad;
    AutocastGuard autocast(precision, device);
    const auto z = p.teacher->forward(weak.contiguous(format)).to(torch::kFloat);
    targets = confident_labels(class_probabilities(z, objective.task == Task::Binary), p.options.threshold, p.options.class_share);
  }
  p.confident_fraction = (targets != kIgnoreLabel).to(torch::kFloat).mean().item<double>();
  if (p.confident_fraction == 0 || p.weight == 0) return torch::zeros({}, weak.options());  // nothing to learn
  const AugmentedBatch strong = strong_view(weak, targets, p.options.min_scale, p.options.max_scale, p.options.mix, &labeled);
  // Scaled by the confident share, as FixMatch averages over all unlabelled pixels: a handful of
  // confident pixels early in training must not carry the full weight lambda.
  const double share = (strong.labels != kIgnoreLabel).to(torch::kFloat).mean().item<double>();
  if (share == 0) return torch::zeros({}, weak.options());
  torch::Tensor logits;
  {
    std::optional<FrozenRunningStatistics> frozen;
    if (!p.options.adapt_statistics) frozen.emplace(student);
    AutocastGuard autocast(precision, device);
    logits = student->forward(strong.images.contiguous(format));
  }
  Objective unweighted = objective;
  unweighted.class_weights = torch::ones_like(objective.class_weights);
  return p.weight * share * segmentation_loss(logits.to(torch::kFloat), strong.labels, unweighted);
}

void ema_update(SegNet& average, SegNet& model, double decay, bool average_statistics) {
  torch::NoGradGuard no_grad;
  auto params = model->named_parameters(), buffers = model->named_buffers();
  for (auto& p : average->named_parameters()) p.value().mul_(decay).add_(params[p.key()], 1.0 - decay);
  for (auto& b : average->named_buffers())
    if (average_statistics && b.value().is_floating_point()) b.value().mul_(decay).add_(buffers[b.key()], 1.0 - decay);
    else b.value().copy_(buffers[b.key()]);
}

PseudoLabelTeacher::PseudoLabelTeacher(const PseudoLabelOptions& options, BatchLoader unlabeled, SegNet teacher,
                                       torch::Device device, Precision precision)
    : options_(options), loader_(std::move(unlabeled)), teacher_(std::move(teacher)) {
  if (loader_.steps_per_epoch() == 0)
    throw OptionError("pseudo.unlabeled", "has " + std::to_string(loader_.samples().size()) +
                                              " images, fewer than the micro-batches of a step (accumulate x processes)");
  teacher_->to(device);
  to_memory_format(*teacher_, fastest_memory_format(device, precision));
  teacher_->eval();
}

void PseudoLabelTeacher::begin_epoch(uint64_t epoch_seed) {
  epoch_seed_ = epoch_seed;
  cycle_ = 0;
  steps_.reset();
}

std::vector<PseudoLabelStep>& PseudoLabelTeacher::begin_step(double progress_epochs) {
  while (!steps_ || !steps_->next(unlabeled_)) {
    steps_.reset();  // an epoch's loader must end before the next begins
    steps_.emplace(loader_.epoch(epoch_seed_ * 7919 + cycle_++));
  }
  const double weight = options_.weight * rampup(progress_epochs, options_.rampup_epochs);
  micro_batches_.clear();
  for (const Batch& batch : unlabeled_.micro_batches)
    micro_batches_.push_back({teacher_, batch, weight, options_});
  return micro_batches_;
}

}  // namespace segnet

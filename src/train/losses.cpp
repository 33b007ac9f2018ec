#include "train/losses.h"

#include <segnet/data.h>

#include <torch/torch.h>

namespace segnet {

Loss default_loss(Task task) { return task == Task::Binary ? Loss::BinaryCrossEntropy : Loss::CrossEntropy; }

bool loss_fits(Loss loss, Task task) { return (loss == Loss::CrossEntropy) == (task == Task::Multiclass); }

torch::Tensor segmentation_loss(const torch::Tensor& logits, const torch::Tensor& labels, const Objective& o) {
  namespace F = torch::nn::functional;
  if (o.task == Task::Multiclass)
    return F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().weight(o.class_weights).ignore_index(kIgnoreLabel));
  const auto valid = labels != kIgnoreLabel;
  const auto target = labels.clamp_max(1).to(torch::kFloat);
  const auto z = logits.squeeze(1);
  torch::Tensor loss = torch::zeros({}, logits.options());
  if (o.loss == Loss::BinaryCrossEntropy || o.loss == Loss::BinaryCrossEntropyDice) {
    const auto w = o.class_weights.index({labels.clamp_max(1)}) * valid;
    const auto per_pixel = F::binary_cross_entropy_with_logits(z, target, F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
    loss = loss + (per_pixel * w).sum() / w.sum().clamp_min(1e-6);
  }
  if (o.loss == Loss::Dice || o.loss == Loss::BinaryCrossEntropyDice) {
    const auto p = torch::sigmoid(z) * valid, t = target * valid;
    loss = loss + 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1);
  }
  return loss;
}

}  // namespace segnet

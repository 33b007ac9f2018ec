#include "train/losses.h"

#include <segnet/data.h>

#include <torch/torch.h>

namespace segnet {

namespace F = torch::nn::functional;

Loss default_loss(Task task) { return task == Task::Binary ? Loss::BinaryCrossEntropy : Loss::CrossEntropy; }

bool loss_fits(Loss loss, Task task) {
  switch (loss) {
    case Loss::BinaryCrossEntropy:
    case Loss::BinaryCrossEntropyDice: return task == Task::Binary;
    case Loss::Dice: return true;
    default: return task == Task::Multiclass;
  }
}

std::string losses_for(Task task) {
  std::vector<std::string> names;
  for (const auto& [loss, name] : ChoiceNames<Loss>::all())
    if (loss_fits(loss, task)) names.push_back(name);
  return name_list(names);
}

namespace {

// The weighted mean of finite per-pixel terms over non-void pixels (void pixels weigh 0), with w(y) the
// true class's weight; 0 when every pixel is void (the denominator's floor only acts then).
torch::Tensor weighted_pixel_mean(const torch::Tensor& per_pixel, const torch::Tensor& labels, const torch::Tensor& weights) {
  const auto valid = labels != kIgnoreLabel;
  const auto w = weights.index({labels.masked_fill(~valid, 0)}) * valid;
  return (per_pixel * w).sum() / w.sum().clamp_min(1e-12);
}

// Softmax probabilities of the non-void pixels, P x C, and their one-hot labels, P x C.
std::pair<torch::Tensor, torch::Tensor> valid_pixels(const torch::Tensor& logits, const torch::Tensor& labels) {
  const int64_t classes = logits.size(1);
  const auto p = torch::softmax(logits, 1).movedim(1, -1).reshape({-1, classes});
  const auto y = labels.reshape(-1);
  const auto valid = y != kIgnoreLabel;
  return {p.index({valid}), F::one_hot(y.index({valid}), classes).to(p.dtype())};
}

}  // namespace

torch::Tensor cross_entropy_loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& weights) {
  // Unweighted and unreduced: the per-pixel -log p(y), 0 at void pixels; weighted below.
  const auto nll = F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().ignore_index(kIgnoreLabel).reduction(torch::kNone));
  return weighted_pixel_mean(nll, labels, weights);
}

torch::Tensor focal_loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& weights, double gamma) {
  const auto nll = F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().ignore_index(kIgnoreLabel).reduction(torch::kNone));
  // 1 - p(y) = 1 - exp(-nll); -expm1 keeps it accurate where p(y) is close to 1.
  return weighted_pixel_mean(torch::pow(-torch::expm1(-nll), gamma) * nll, labels, weights);
}

torch::Tensor dice_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  const auto [p, t] = valid_pixels(logits, labels);
  const auto truth = t.sum(0);
  const auto present = (truth > 0).to(p.dtype());
  // The floor only acts on classes absent from both (all-void batches), which `present` drops.
  const auto dice = 2 * (p * t).sum(0) / (p.sum(0) + truth).clamp_min(1e-12);
  return ((1 - dice) * present).sum() / present.sum().clamp_min(1);
}

torch::Tensor lovasz_softmax_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  const auto [p, t] = valid_pixels(logits, labels);
  // All classes at once: each column of errors sorted in decreasing order, its labels in that order.
  const auto [errors, order] = torch::sort((t - p).abs(), 0, /*descending=*/true);
  const auto t_sorted = t.gather(0, order);
  // The gradient of the Lovasz extension of the Jaccard loss: J(i) - J(i-1), where J(i) is the Jaccard
  // loss of predicting the first i pixels (by error) wrong. The union is at least 1 at every i.
  const auto truth = t.sum(0);
  const auto intersection = truth - t_sorted.cumsum(0);
  const auto uni = truth + (1 - t_sorted).cumsum(0);
  const auto jaccard = 1 - intersection / uni;
  const auto grad = torch::cat({jaccard.slice(0, 0, 1), jaccard.slice(0, 1) - jaccard.slice(0, 0, -1)});
  const auto present = (truth > 0).to(p.dtype());
  return ((errors * grad).sum(0) * present).sum() / present.sum().clamp_min(1);
}

torch::Tensor segmentation_loss(const torch::Tensor& logits, const torch::Tensor& labels, const Objective& o) {
  if (o.task == Task::Multiclass) {
    const bool ce = o.loss == Loss::CrossEntropy || o.loss == Loss::CrossEntropyDice || o.loss == Loss::CrossEntropyFocal ||
                    o.loss == Loss::CrossEntropyLovasz;
    torch::Tensor loss = ce ? cross_entropy_loss(logits, labels, o.class_weights) : torch::zeros({}, logits.options());
    if (o.loss == Loss::Dice || o.loss == Loss::CrossEntropyDice) loss = loss + dice_loss(logits, labels);
    if (o.loss == Loss::Focal || o.loss == Loss::CrossEntropyFocal) loss = loss + focal_loss(logits, labels, o.class_weights);
    if (o.loss == Loss::Lovasz || o.loss == Loss::CrossEntropyLovasz) loss = loss + lovasz_softmax_loss(logits, labels);
    return loss;
  }
  const auto valid = labels != kIgnoreLabel;
  const auto target = labels.clamp_max(1).to(torch::kFloat);
  const auto z = logits.squeeze(1);
  torch::Tensor loss = torch::zeros({}, logits.options());
  if (o.loss == Loss::BinaryCrossEntropy || o.loss == Loss::BinaryCrossEntropyDice) {
    const auto per_pixel = F::binary_cross_entropy_with_logits(z, target, F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
    loss = loss + weighted_pixel_mean(per_pixel, labels, o.class_weights);
  }
  if (o.loss == Loss::Dice || o.loss == Loss::BinaryCrossEntropyDice) {
    const auto p = torch::sigmoid(z) * valid, t = target * valid;
    loss = loss + 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1);
  }
  return loss;
}

}  // namespace segnet

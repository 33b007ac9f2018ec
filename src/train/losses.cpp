#include "train/losses.h"

#include <segnet/data.h>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <numeric>

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

// Softmax probabilities of the non-void pixels and their one-hot labels, class-major: C x P each.
std::pair<torch::Tensor, torch::Tensor> valid_pixels(const torch::Tensor& logits, const torch::Tensor& labels) {
  const int64_t classes = logits.size(1);
  const auto y = labels.reshape(-1);
  const auto valid = y != kIgnoreLabel;
  const auto p = torch::softmax(logits, 1).movedim(1, 0).reshape({classes, -1}).index({torch::indexing::Slice(), valid});
  const auto t = torch::arange(classes, y.options()).unsqueeze(1) == y.index({valid}).unsqueeze(0);
  return {p, t.to(p.dtype())};
}

// Each row's order by decreasing value, by a stable LSD radix sort of the values' bits (non-negative
// IEEE numbers order like their bit patterns; complemented, they order in reverse). With torch::sort
// the Lovasz term took 3.6x as long (292 against 81 ms forward and backward, 4 x 180 x 240 pixels,
// 11 classes, one thread).
template <typename Real, typename Bits>
torch::Tensor radix_descending_order(const torch::Tensor& rows) {
  static_assert(sizeof(Real) == sizeof(Bits));
  constexpr int kDigitBits = 11;
  constexpr Bits kDigitMask = (Bits(1) << kDigitBits) - 1;
  const auto values = rows.contiguous();
  const int64_t count = values.size(0), n = values.size(1);
  auto order = torch::empty({count, n}, torch::kLong);
  const Real* in = values.data_ptr<Real>();
  int64_t* out = order.data_ptr<int64_t>();
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    std::vector<Bits> key(n), next_key(n);
    std::vector<int64_t> index(n), next_index(n);
    std::vector<int64_t> start(kDigitMask + 2);
    for (int64_t row = begin; row < end; ++row) {
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(&key[i], in + row * n + i, sizeof(Real));
        key[i] = ~key[i];
        index[i] = i;
      }
      for (int shift = 0; shift < int(8 * sizeof(Bits)); shift += kDigitBits) {
        std::fill(start.begin(), start.end(), 0);
        for (int64_t i = 0; i < n; ++i) ++start[((key[i] >> shift) & kDigitMask) + 1];
        if (*std::max_element(start.begin(), start.end()) == n) continue;  // one digit everywhere: nothing moves
        std::partial_sum(start.begin(), start.end(), start.begin());
        for (int64_t i = 0; i < n; ++i) {
          const int64_t at = start[(key[i] >> shift) & kDigitMask]++;
          next_key[at] = key[i];
          next_index[at] = index[i];
        }
        key.swap(next_key);
        index.swap(next_index);
      }
      std::copy(index.begin(), index.end(), out + row * n);
    }
  });
  return order;
}

// The order of each row of `rows` (C x P, non-negative) by decreasing value.
torch::Tensor descending_order(const torch::Tensor& rows) {
  if (rows.is_cpu() && rows.scalar_type() == torch::kFloat) return radix_descending_order<float, uint32_t>(rows);
  if (rows.is_cpu() && rows.scalar_type() == torch::kDouble) return radix_descending_order<double, uint64_t>(rows);
  return std::get<1>(torch::sort(rows, 1, /*descending=*/true));
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
  const auto truth = t.sum(1);
  const auto present = (truth > 0).to(p.dtype());
  // The floor only acts on classes absent from both (all-void batches), which `present` drops.
  const auto dice = 2 * (p * t).sum(1) / (p.sum(1) + truth).clamp_min(1e-12);
  return ((1 - dice) * present).sum() / present.sum().clamp_min(1);
}

torch::Tensor lovasz_softmax_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  const auto [p, t] = valid_pixels(logits, labels);
  // All classes at once: each row of errors in decreasing order, its labels in that order.
  const auto absolute_errors = (t - p).abs();
  const auto order = descending_order(absolute_errors.detach());
  const auto errors = absolute_errors.gather(1, order);
  const auto t_sorted = t.gather(1, order);
  // The gradient of the Lovasz extension of the Jaccard loss: J(i) - J(i-1), where J(i) is the Jaccard
  // loss of predicting the first i pixels (by error) wrong. The union is at least 1 at every i.
  const auto truth = t.sum(1, /*keepdim=*/true);
  const auto intersection = truth - t_sorted.cumsum(1);
  const auto uni = truth + (1 - t_sorted).cumsum(1);
  const auto jaccard = 1 - intersection / uni;
  const auto grad = torch::cat({jaccard.slice(1, 0, 1), jaccard.slice(1, 1) - jaccard.slice(1, 0, -1)}, 1);
  const auto present = (truth.squeeze(1) > 0).to(p.dtype());
  return ((errors * grad).sum(1) * present).sum() / present.sum().clamp_min(1);
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

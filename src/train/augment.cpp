#include "train/augment.h"

#include <segnet/data.h>

#include "data/augmentation.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

namespace segnet {

AugmentedBatch rescaled_view(const torch::Tensor& x, const torch::Tensor& labels, double min_scale, double max_scale) {
  if (min_scale == 1 && max_scale == 1) return {x, labels};
  namespace F = torch::nn::functional;
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  auto images = torch::zeros_like(x), out_labels = torch::full_like(labels, kIgnoreLabel);
  const auto below = [](int64_t bound) { return torch::randint(bound, {1}, torch::kLong).item<int64_t>(); };
  for (int64_t k = 0; k < n; ++k) {
    const double scale = min_scale + (max_scale - min_scale) * torch::rand({1}).item<double>();
    const std::vector<int64_t> scaled{std::max<int64_t>(1, std::lround(h * scale)),
                                      std::max<int64_t>(1, std::lround(w * scale))};
    const auto image = F::interpolate(x.narrow(0, k, 1), F::InterpolateFuncOptions()
                                                             .size(scaled)
                                                             .mode(torch::kBilinear)
                                                             .align_corners(false));
    const auto label = F::interpolate(labels.narrow(0, k, 1).unsqueeze(1).to(torch::kFloat),
                                      F::InterpolateFuncOptions().size(scaled).mode(torch::kNearest))
                           .to(labels.scalar_type());
    const Placement rows = place(scaled[0], h, below), cols = place(scaled[1], w, below);
    using torch::indexing::Slice;
    const auto from_rows = Slice(rows.source, rows.source + rows.length), to_rows = Slice(rows.target, rows.target + rows.length);
    const auto from_cols = Slice(cols.source, cols.source + cols.length), to_cols = Slice(cols.target, cols.target + cols.length);
    images.index({k, Slice(), to_rows, to_cols}).copy_(image.index({0, Slice(), from_rows, from_cols}));
    out_labels.index({k, to_rows, to_cols}).copy_(label.index({0, 0, from_rows, from_cols}));
  }
  return {images, out_labels};
}

torch::Tensor class_mix_mask(const torch::Tensor& labels) {
  auto mask = torch::zeros_like(labels, torch::kBool);
  for (int64_t k = 0; k < labels.size(0); ++k) {
    const auto classes = std::get<0>(torch::_unique(labels[k]));
    const auto present = classes.masked_select(classes != kIgnoreLabel);
    const int64_t n = present.numel();
    if (n == 0) continue;
    const auto chosen = present.index_select(0, torch::randperm(n, torch::kLong).narrow(0, 0, (n + 1) / 2));
    mask[k] = torch::isin(labels[k], chosen);
  }
  return mask;
}

torch::Tensor match_color_statistics(const torch::Tensor& source, const torch::Tensor& target) {
  const auto spread = [](const torch::Tensor& x) { return x.std({2, 3}, /*unbiased=*/false, /*keepdim=*/true); };
  const auto mean = [](const torch::Tensor& x) { return x.mean({2, 3}, /*keepdim=*/true); };
  // A flat channel has no spread to rescale: it only moves to the target's mean.
  return (source - mean(source)) / spread(source).clamp_min(1e-6) * spread(target) + mean(target);
}

AugmentedBatch strong_view(const torch::Tensor& images, const torch::Tensor& labels, double min_scale, double max_scale,
                           PseudoMix mix, const Batch* labeled) {
  auto [x, mixed_labels] = rescaled_view(images, labels, min_scale, max_scale);
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  if (mix != PseudoMix::CutMix) {
    if (!labeled) throw std::invalid_argument("strong_view: ClassMix needs the labelled images");
    const auto from = torch::arange(n, torch::kLong).remainder(labeled->images.size(0)).to(x.device());
    const auto source_labels = labeled->labels.index_select(0, from).to(mixed_labels.scalar_type());
    auto source = labeled->images.index_select(0, from).to(x.scalar_type());
    if (mix == PseudoMix::RecoloredClassMix) source = match_color_statistics(source, x);
    const auto mask = class_mix_mask(source_labels);
    x = torch::where(mask.unsqueeze(1), source, x);
    mixed_labels = torch::where(mask, source_labels, mixed_labels);
  }
  auto opts = x.options().dtype(torch::kFloat);
  auto y = x * (0.6 + 0.8 * torch::rand({n, 1, 1, 1}, opts)) + (torch::rand({n, 1, 1, 1}, opts) - 0.5) * 0.8 +
           (torch::rand({n, 3, 1, 1}, opts) - 0.5) * 0.4;
  const auto blurred = torch::avg_pool2d(y, 3, 1, 1, /*ceil_mode=*/false, /*count_include_pad=*/false);
  y = torch::where(torch::rand({n, 1, 1, 1}, opts) < 0.5, blurred, y);
  if (mix != PseudoMix::CutMix) return {y, mixed_labels};
  const double box_h = h * std::sqrt(0.5), box_w = w * std::sqrt(0.5);
  const auto rows = torch::arange(h, opts).view({1, 1, h, 1}), cols = torch::arange(w, opts).view({1, 1, 1, w});
  const auto top = torch::rand({n, 1, 1, 1}, opts) * (h - box_h), left = torch::rand({n, 1, 1, 1}, opts) * (w - box_w);
  const auto inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w);
  return {torch::where(inside, y.roll(1, 0), y),
          torch::where(inside.squeeze(1), mixed_labels.roll(1, 0), mixed_labels)};
}

}  // namespace segnet

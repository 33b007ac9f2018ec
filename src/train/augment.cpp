#include "train/augment.h"

#include <segnet/data.h>

#include <torch/torch.h>

#include <cmath>

namespace segnet {

namespace {

// Where the rescaled extent `scaled` meets the output extent `size` along one axis, at a random offset:
// a crop of the rescaled image when it is larger, a paste into the output when it is smaller.
struct Span {
  int64_t from, to, length;  // rescaled[from, from + length) -> output[to, to + length)
};
Span random_span(int64_t scaled, int64_t size) {
  const int64_t slack = std::abs(scaled - size);
  const int64_t offset = slack == 0 ? 0 : torch::randint(slack + 1, {1}, torch::kLong).item<int64_t>();
  return scaled >= size ? Span{offset, 0, size} : Span{0, offset, scaled};
}

}  // namespace

AugmentedBatch rescaled_view(const torch::Tensor& x, const torch::Tensor& labels, double min_scale, double max_scale) {
  if (min_scale == 1 && max_scale == 1) return {x, labels};
  namespace F = torch::nn::functional;
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  auto images = torch::zeros_like(x), out_labels = torch::full_like(labels, kIgnoreLabel);
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
    const Span rows = random_span(scaled[0], h), cols = random_span(scaled[1], w);
    using torch::indexing::Slice;
    const auto source = [&](const torch::Tensor& t) {
      return t.index({0, Slice(), Slice(rows.from, rows.from + rows.length), Slice(cols.from, cols.from + cols.length)});
    };
    images.index({k, Slice(), Slice(rows.to, rows.to + rows.length), Slice(cols.to, cols.to + cols.length)})
        .copy_(source(image));
    out_labels.index({k, Slice(rows.to, rows.to + rows.length), Slice(cols.to, cols.to + cols.length)})
        .copy_(source(label).squeeze(0));
  }
  return {images, out_labels};
}

AugmentedBatch strong_view(const torch::Tensor& images, const torch::Tensor& labels, double min_scale, double max_scale) {
  const auto [x, rescaled_labels] = rescaled_view(images, labels, min_scale, max_scale);
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  auto opts = x.options().dtype(torch::kFloat);
  auto y = x * (0.6 + 0.8 * torch::rand({n, 1, 1, 1}, opts)) + (torch::rand({n, 1, 1, 1}, opts) - 0.5) * 0.8 +
           (torch::rand({n, 3, 1, 1}, opts) - 0.5) * 0.4;
  const auto blurred = torch::avg_pool2d(y, 3, 1, 1, /*ceil_mode=*/false, /*count_include_pad=*/false);
  y = torch::where(torch::rand({n, 1, 1, 1}, opts) < 0.5, blurred, y);
  const double box_h = h * std::sqrt(0.5), box_w = w * std::sqrt(0.5);
  const auto rows = torch::arange(h, opts).view({1, 1, h, 1}), cols = torch::arange(w, opts).view({1, 1, 1, w});
  const auto top = torch::rand({n, 1, 1, 1}, opts) * (h - box_h), left = torch::rand({n, 1, 1, 1}, opts) * (w - box_w);
  const auto inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w);
  return {torch::where(inside, y.roll(1, 0), y),
          torch::where(inside.squeeze(1), rescaled_labels.roll(1, 0), rescaled_labels)};
}

}  // namespace segnet

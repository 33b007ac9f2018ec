#include "train/augment.h"

#include <torch/torch.h>

#include <cmath>

namespace segnet {

AugmentedBatch strong_view(const torch::Tensor& x, const torch::Tensor& labels) {
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
  return {torch::where(inside, y.roll(1, 0), y), torch::where(inside.squeeze(1), labels.roll(1, 0), labels)};
}

}  // namespace segnet

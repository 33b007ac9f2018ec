#include <segnet/data.h>
#include <segnet/metrics.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace segnet {

namespace {

// One image's class ids, row-major, and where its classes' contours are.
struct ContourMap {
  int rows, cols;
  std::vector<uint8_t> ids;
  std::vector<bool> contour;  // the pixel's class differs from one of its 4-neighbours in the image
};

ContourMap contours(const torch::Tensor& ids) {
  TORCH_CHECK(ids.dim() == 2, "boundary F1 takes one image's class ids, H x W");
  const auto bytes = ids.to(torch::kCPU).clamp(0, 255).to(torch::kUInt8).contiguous();
  ContourMap m{static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), {}, {}};
  m.ids.assign(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
  m.contour.resize(m.ids.size());
  for (int y = 0; y < m.rows; ++y)
    for (int x = 0; x < m.cols; ++x) {
      const size_t i = size_t(y) * m.cols + x;
      const uint8_t c = m.ids[i];
      m.contour[i] = (y > 0 && m.ids[i - m.cols] != c) || (y + 1 < m.rows && m.ids[i + m.cols] != c) ||
                     (x > 0 && m.ids[i - 1] != c) || (x + 1 < m.cols && m.ids[i + 1] != c);
    }
  return m;
}

// Whether `m` has a contour pixel of class `c` within `disk` (offsets, nearest first) of (y, x).
bool near_contour(const ContourMap& m, uint8_t c, int y, int x, const std::vector<std::pair<int, int>>& disk) {
  for (const auto& [dy, dx] : disk) {
    const int yy = y + dy, xx = x + dx;
    if (yy < 0 || yy >= m.rows || xx < 0 || xx >= m.cols) continue;
    const size_t i = size_t(yy) * m.cols + xx;
    if (m.contour[i] && m.ids[i] == c) return true;
  }
  return false;
}

}  // namespace

BoundaryF1::BoundaryF1(int64_t num_classes, double tolerance)
    : num_classes_(num_classes), tolerance_(tolerance), class_sum_(num_classes, 0.0), class_images_(num_classes, 0) {
  TORCH_CHECK(num_classes >= 1 && num_classes < kIgnoreLabel, "boundary F1 takes 1 to ", kIgnoreLabel - 1, " classes");
  TORCH_CHECK(tolerance >= 0, "boundary F1 tolerance must be non-negative");
}

double BoundaryF1::add(const torch::Tensor& prediction, const torch::Tensor& target) {
  TORCH_CHECK(prediction.sizes() == target.sizes(), "prediction and target shapes differ");
  ContourMap predicted = contours(prediction);
  const ContourMap truth = contours(target);
  for (size_t i = 0; i < truth.ids.size(); ++i)  // predicted contours on void truth are not scored
    if (truth.ids[i] >= num_classes_) predicted.contour[i] = false;
  const double radius = tolerance_ * std::hypot(double(truth.rows), double(truth.cols));
  std::vector<std::pair<int, int>> disk;  // every offset within the tolerance, nearest first
  for (int r = static_cast<int>(radius), dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx)
      if (dy * dy + dx * dx <= radius * radius) disk.emplace_back(dy, dx);
  std::stable_sort(disk.begin(), disk.end(), [](const auto& a, const auto& b) {
    return a.first * a.first + a.second * a.second < b.first * b.first + b.second * b.second;
  });

  // Per class: its pixels in the truth, and the contour pixels of truth and prediction with how many
  // of them lie within the tolerance of the other's contour of the class.
  std::vector<int64_t> in_truth(num_classes_, 0), truth_contour(num_classes_, 0), truth_matched(num_classes_, 0),
      predicted_contour(num_classes_, 0), predicted_matched(num_classes_, 0);
  for (int y = 0; y < truth.rows; ++y)
    for (int x = 0; x < truth.cols; ++x) {
      const size_t i = size_t(y) * truth.cols + x;
      const uint8_t t = truth.ids[i], p = predicted.ids[i];
      if (t >= num_classes_) continue;
      ++in_truth[t];
      if (truth.contour[i]) {
        ++truth_contour[t];
        truth_matched[t] += near_contour(predicted, t, y, x, disk);
      }
      if (predicted.contour[i] && p < num_classes_) {
        ++predicted_contour[p];
        predicted_matched[p] += near_contour(truth, p, y, x, disk);
      }
    }

  double sum = 0;
  int64_t classes = 0;
  for (int64_t c = 0; c < num_classes_; ++c) {
    if (!in_truth[c]) continue;
    double f1 = predicted_contour[c] == truth_contour[c] ? 1.0 : 0.0;  // neither has a contour, or one has none
    if (predicted_contour[c] && truth_contour[c]) {
      const double precision = double(predicted_matched[c]) / double(predicted_contour[c]);
      const double recall = double(truth_matched[c]) / double(truth_contour[c]);
      f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
    }
    class_sum_[c] += f1;
    ++class_images_[c];
    sum += f1;
    ++classes;
  }
  if (classes == 0) return std::numeric_limits<double>::quiet_NaN();
  image_sum_ += sum / double(classes);
  ++images_;
  return sum / double(classes);
}

double BoundaryF1::mean() const {
  return images_ ? image_sum_ / double(images_) : std::numeric_limits<double>::quiet_NaN();
}

std::vector<double> BoundaryF1::class_scores() const {
  std::vector<double> scores(num_classes_, std::numeric_limits<double>::quiet_NaN());
  for (int64_t c = 0; c < num_classes_; ++c)
    if (class_images_[c]) scores[c] = class_sum_[c] / double(class_images_[c]);
  return scores;
}

}  // namespace segnet

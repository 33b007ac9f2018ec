#include <segnet/error.h>
#include <segnet/metrics.h>

#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace segnet {

ConfusionMatrix::ConfusionMatrix(int64_t num_classes)
    : num_classes_(num_classes), counts_(static_cast<size_t>(num_classes * num_classes), 0) {}

ConfusionMatrix::ConfusionMatrix(int64_t num_classes, std::vector<int64_t> counts)
    : num_classes_(num_classes), counts_(std::move(counts)) {
  TORCH_CHECK(static_cast<int64_t>(counts_.size()) == num_classes * num_classes, "confusion counts of another class count");
}

void ConfusionMatrix::add(const torch::Tensor& prediction, const torch::Tensor& target) {
  TORCH_CHECK(prediction.sizes() == target.sizes(), "prediction and target shapes differ");
  const auto t = target.reshape(-1).to(torch::kCPU, torch::kLong);
  const auto p = prediction.reshape(-1).to(torch::kCPU, torch::kLong);
  const auto valid = (t >= 0) & (t < num_classes_);
  const auto pairs = t.masked_select(valid) * num_classes_ + p.masked_select(valid);
  const auto bins = torch::bincount(pairs, {}, num_classes_ * num_classes_);
  const int64_t* b = bins.data_ptr<int64_t>();
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += b[i];
}

void ConfusionMatrix::merge(const ConfusionMatrix& other) {
  TORCH_CHECK(other.num_classes_ == num_classes_, "confusion matrices of different class counts");
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
}

int64_t ConfusionMatrix::count(int64_t truth, int64_t predicted) const {
  return counts_[static_cast<size_t>(truth * num_classes_ + predicted)];
}

int64_t ConfusionMatrix::truth_pixels(int64_t c) const {
  int64_t n = 0;
  for (int64_t p = 0; p < num_classes_; ++p) n += count(c, p);
  return n;
}

int64_t ConfusionMatrix::predicted_pixels(int64_t c) const {
  int64_t n = 0;
  for (int64_t t = 0; t < num_classes_; ++t) n += count(t, c);
  return n;
}

double ConfusionMatrix::global_accuracy() const {
  int64_t correct = 0, total = 0;
  for (int64_t c = 0; c < num_classes_; ++c) correct += count(c, c);
  for (int64_t n : counts_) total += n;
  return total ? double(correct) / double(total) : std::numeric_limits<double>::quiet_NaN();
}

std::vector<double> ConfusionMatrix::class_accuracy() const {
  std::vector<double> acc(num_classes_, std::numeric_limits<double>::quiet_NaN());
  for (int64_t c = 0; c < num_classes_; ++c)
    if (const int64_t truth = truth_pixels(c)) acc[c] = double(count(c, c)) / double(truth);
  return acc;
}

std::vector<double> ConfusionMatrix::class_precision() const {
  std::vector<double> precision(num_classes_, std::numeric_limits<double>::quiet_NaN());
  for (int64_t c = 0; c < num_classes_; ++c)
    if (const int64_t predicted = predicted_pixels(c)) precision[c] = double(count(c, c)) / double(predicted);
  return precision;
}

std::vector<double> ConfusionMatrix::class_iou() const {
  std::vector<double> iou(num_classes_, std::numeric_limits<double>::quiet_NaN());
  for (int64_t c = 0; c < num_classes_; ++c)
    if (const int64_t uni = truth_pixels(c) + predicted_pixels(c) - count(c, c)) iou[c] = double(count(c, c)) / double(uni);
  return iou;
}

std::vector<double> ConfusionMatrix::class_dice() const {
  std::vector<double> dice(num_classes_, std::numeric_limits<double>::quiet_NaN());
  for (int64_t c = 0; c < num_classes_; ++c)
    if (const int64_t both = truth_pixels(c) + predicted_pixels(c)) dice[c] = 2.0 * double(count(c, c)) / double(both);
  return dice;
}

std::vector<double> ConfusionMatrix::class_fscore() const {
  const auto precision = class_precision(), recall = class_accuracy();
  std::vector<double> fscore(num_classes_);
  // NaN operands, and 0/0 where both are 0, give NaN as in MMSegmentation.
  for (int64_t c = 0; c < num_classes_; ++c) fscore[c] = 2 * precision[c] * recall[c] / (precision[c] + recall[c]);
  return fscore;
}

double ConfusionMatrix::frequency_weighted_iou() const {
  const auto iou = class_iou();
  int64_t total = 0;
  for (int64_t n : counts_) total += n;
  if (!total) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  for (int64_t c = 0; c < num_classes_; ++c)  // classes not in the truth weigh 0 (their IoU may be NaN)
    if (const int64_t truth = truth_pixels(c)) sum += double(truth) / double(total) * iou[c];
  return sum;
}

static double mean_defined(const std::vector<double>& values) {
  double sum = 0;
  int n = 0;
  for (double v : values)
    if (!std::isnan(v)) sum += v, ++n;
  return n ? sum / n : std::numeric_limits<double>::quiet_NaN();
}

torch::Tensor predictive_entropy(const torch::Tensor& probabilities) {
  return -(probabilities * torch::log(probabilities.clamp_min(1e-12))).sum(0);
}

double ConfusionMatrix::class_average_accuracy() const { return mean_defined(class_accuracy()); }
double ConfusionMatrix::mean_iou() const { return mean_defined(class_iou()); }
double ConfusionMatrix::mean_dice() const { return mean_defined(class_dice()); }
double ConfusionMatrix::mean_fscore() const { return mean_defined(class_fscore()); }

}  // namespace segnet

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

double ConfusionMatrix::global_accuracy() const {
  int64_t correct = 0, total = 0;
  for (int64_t c = 0; c < num_classes_; ++c) correct += count(c, c);
  for (int64_t n : counts_) total += n;
  return total ? double(correct) / double(total) : std::numeric_limits<double>::quiet_NaN();
}

std::vector<double> ConfusionMatrix::class_accuracy() const {
  std::vector<double> acc(num_classes_, std::numeric_limits<double>::quiet_NaN());
  for (int64_t c = 0; c < num_classes_; ++c) {
    int64_t truth = 0;
    for (int64_t p = 0; p < num_classes_; ++p) truth += count(c, p);
    if (truth) acc[c] = double(count(c, c)) / double(truth);
  }
  return acc;
}

std::vector<double> ConfusionMatrix::class_iou() const {
  std::vector<double> iou(num_classes_, std::numeric_limits<double>::quiet_NaN());
  for (int64_t c = 0; c < num_classes_; ++c) {
    int64_t truth = 0, predicted = 0;
    for (int64_t k = 0; k < num_classes_; ++k) truth += count(c, k), predicted += count(k, c);
    const int64_t uni = truth + predicted - count(c, c);
    if (uni) iou[c] = double(count(c, c)) / double(uni);
  }
  return iou;
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

}  // namespace segnet

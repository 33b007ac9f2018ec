#include <segnet/evaluate.h>

#include "common/prefetch.h"

#include <torch/torch.h>

#include <cmath>

namespace segnet {

ConfusionMatrix evaluate(Segmenter& segmenter, const std::vector<SamplePaths>& samples, const LabelSpec& spec,
                         const std::function<void(size_t, size_t)>& progress) {
  ConfusionMatrix matrix(spec.num_classes);
  Prefetcher<Sample> decoded(  // the next images decode while the network runs
      [&, next = size_t(0)]() mutable -> std::optional<Sample> {
        if (next == samples.size()) return std::nullopt;
        return read_sample(samples[next++], spec);
      },
      2);
  size_t done = 0;
  for (Sample s; decoded.next(s);) {
    matrix.add(label_tensor(segmenter.segment(s.image)), label_tensor(s.label));
    if (progress) progress(++done, samples.size());
  }
  return matrix;
}

static nlohmann::json number(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

nlohmann::json metrics_json(const ConfusionMatrix& matrix, const std::vector<ClassInfo>& classes) {
  nlohmann::json j;
  j["global_acc"] = number(matrix.global_accuracy());
  j["class_avg_acc"] = number(matrix.class_average_accuracy());
  j["miou"] = number(matrix.mean_iou());
  const auto iou = matrix.class_iou(), acc = matrix.class_accuracy();
  j["per_class"] = nlohmann::json::array();
  for (int64_t c = 0; c < matrix.num_classes(); ++c)
    j["per_class"].push_back({{"name", classes[c].name}, {"iou", number(iou[c])}, {"acc", number(acc[c])}});
  j["confusion"] = nlohmann::json::array();
  for (int64_t t = 0; t < matrix.num_classes(); ++t) {
    std::vector<int64_t> row;
    for (int64_t p = 0; p < matrix.num_classes(); ++p) row.push_back(matrix.count(t, p));
    j["confusion"].push_back(row);
  }
  return j;
}

nlohmann::json binary_metrics_json(const ConfusionMatrix& m) {
  const double tp = double(m.count(1, 1)), fp = double(m.count(0, 1)), fn = double(m.count(1, 0));
  const double nan = std::nan("");
  auto ratio = [&](double a, double b) { return number(b > 0 ? a / b : nan); };
  nlohmann::json j;
  j["iou"] = ratio(tp, tp + fp + fn);
  j["dice"] = ratio(2 * tp, 2 * tp + fp + fn);
  j["precision"] = ratio(tp, tp + fp);
  j["recall"] = ratio(tp, tp + fn);
  j["pixel_acc"] = number(m.global_accuracy());
  j["confusion"] = {{m.count(0, 0), m.count(0, 1)}, {m.count(1, 0), m.count(1, 1)}};
  return j;
}

}  // namespace segnet

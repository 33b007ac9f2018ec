#include <segnet/error.h>
#include <segnet/evaluate.h>

#include "common/format_number.h"
#include "common/prefetch.h"

#include <torch/torch.h>

#include <cmath>

namespace segnet {

void check_dataset_classes(const ModelInfo& info, const std::filesystem::path& data) {
  const std::filesystem::path csv = data / "classes.csv";
  if (info.binary() || !std::filesystem::exists(csv)) return;
  const size_t classes = read_classes_csv(csv).size();
  if (classes != info.classes.size())
    throw Error(csv, "has " + std::to_string(classes) + " classes; the model was trained on " +
                         std::to_string(info.classes.size()));
}

void for_each_prediction(Segmenter& segmenter, const std::vector<SamplePaths>& samples, const LabelSpec& spec,
                         const std::function<void(size_t, const torch::Tensor&, const torch::Tensor&)>& scored) {
  Prefetcher<Sample> decoded(  // the next images decode while the network runs
      [&, next = size_t(0)]() mutable -> std::optional<Sample> {
        if (next == samples.size()) return std::nullopt;
        return read_sample(samples[next++], spec, segmenter.info().input_range);
      },
      2);
  size_t index = 0;
  for (Sample s; decoded.next(s); ++index) {
    const cv::Mat predicted = segmenter.segment(s.image);  // label_tensor shares its pixels
    scored(index, label_tensor(predicted), label_tensor(s.label));
  }
}

Evaluation evaluate(Segmenter& segmenter, const std::vector<SamplePaths>& samples, const LabelSpec& spec,
                    const std::function<void(size_t, size_t)>& progress) {
  Evaluation e{ConfusionMatrix(spec.num_classes), BoundaryF1(spec.num_classes), {}};
  for_each_prediction(segmenter, samples, spec, [&](size_t i, const torch::Tensor& prediction, const torch::Tensor& truth) {
    ConfusionMatrix image(spec.num_classes);
    image.add(prediction, truth);
    e.confusion.merge(image);
    const double bf = e.boundary.add(prediction, truth);
    e.images.push_back({samples[i].image, image.global_accuracy(), image.mean_iou(), bf});
    if (progress) progress(i + 1, samples.size());
  });
  return e;
}

static nlohmann::json number(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

nlohmann::json metrics_json(const Evaluation& e, const std::vector<ClassInfo>& classes) {
  const ConfusionMatrix& matrix = e.confusion;
  nlohmann::json j;
  j["global_acc"] = number(matrix.global_accuracy());
  j["class_avg_acc"] = number(matrix.class_average_accuracy());
  j["miou"] = number(matrix.mean_iou());
  j["mdice"] = number(matrix.mean_dice());
  j["mfscore"] = number(matrix.mean_fscore());
  j["fwiou"] = number(matrix.frequency_weighted_iou());
  j["bf"] = number(e.boundary.mean());
  const auto iou = matrix.class_iou(), acc = matrix.class_accuracy(), dice = matrix.class_dice(),
             precision = matrix.class_precision(), fscore = matrix.class_fscore(), bf = e.boundary.class_scores();
  j["per_class"] = nlohmann::json::array();
  for (int64_t c = 0; c < matrix.num_classes(); ++c)
    j["per_class"].push_back({{"name", classes[c].name},
                              {"iou", number(iou[c])},
                              {"acc", number(acc[c])},
                              {"dice", number(dice[c])},
                              {"precision", number(precision[c])},
                              {"fscore", number(fscore[c])},
                              {"bf", number(bf[c])}});
  j["confusion"] = nlohmann::json::array();
  for (int64_t t = 0; t < matrix.num_classes(); ++t) {
    std::vector<int64_t> row;
    for (int64_t p = 0; p < matrix.num_classes(); ++p) row.push_back(matrix.count(t, p));
    j["confusion"].push_back(row);
  }
  return j;
}

nlohmann::json binary_metrics_json(const Evaluation& e) {
  const ConfusionMatrix& m = e.confusion;
  constexpr int64_t foreground = 1;
  nlohmann::json j;
  j["iou"] = number(m.class_iou()[foreground]);
  j["dice"] = number(m.class_dice()[foreground]);
  j["precision"] = number(m.class_precision()[foreground]);
  j["recall"] = number(m.class_accuracy()[foreground]);
  j["bf"] = number(e.boundary.class_scores()[foreground]);
  j["pixel_acc"] = number(m.global_accuracy());
  // Over background and foreground, as MMSegmentation scores a two-class dataset.
  j["miou"] = number(m.mean_iou());
  j["mdice"] = number(m.mean_dice());
  j["fwiou"] = number(m.frequency_weighted_iou());
  j["confusion"] = {{m.count(0, 0), m.count(0, 1)}, {m.count(1, 0), m.count(1, 1)}};
  return j;
}

// A CSV field: quoted where it holds a comma, a quote or a line break.
static std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

std::string image_scores_csv(const std::vector<ImageScore>& images) {
  std::string csv = "image,global_acc,miou,bf\n";
  const auto value = [](double v) { return std::isnan(v) ? std::string() : format_number(v); };
  for (const ImageScore& s : images)
    csv += csv_field(s.image.string()) + "," + value(s.global_acc) + "," + value(s.miou) + "," + value(s.bf) + "\n";
  return csv;
}

}  // namespace segnet

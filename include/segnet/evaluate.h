#pragma once
// Scoring a model on a labelled list with the SegNet paper's metrics.
#include <segnet/data.h>
#include <segnet/metrics.h>
#include <segnet/segmenter.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace segnet {

// One scored image.
struct ImageScore {
  std::filesystem::path image;
  double global_acc;  // of its non-void pixels
  double miou;        // over the classes in its truth or its prediction
  double bf;          // BoundaryF1's image score
};

struct Evaluation {
  ConfusionMatrix confusion;  // summed over the images
  BoundaryF1 boundary;
  std::vector<ImageScore> images;  // in list order
};

// Segments each sample in list order and calls `scored(index, prediction, truth)` with both as class
// ids (H x W; truth kIgnoreLabel for void) at the label's own resolution: the loop under evaluate, for
// scores of one's own.
void for_each_prediction(Segmenter& segmenter, const std::vector<SamplePaths>& samples, const LabelSpec& spec,
                         const std::function<void(size_t, const torch::Tensor&, const torch::Tensor&)>& scored);

// Predictions are compared with each label at the label's own resolution. `progress(done, total)`
// is called after each image when given.
Evaluation evaluate(Segmenter& segmenter, const std::vector<SamplePaths>& samples, const LabelSpec& spec,
                    const std::function<void(size_t, size_t)>& progress = {});

// Labels are scored as the model's class ids: a dataset folder whose classes.csv lists another number
// of classes (its void value could be one of the model's classes) is an Error naming classes.csv.
// Binary models, and folders without classes.csv, pass.
void check_dataset_classes(const ModelInfo& info, const std::filesystem::path& data);

// global_acc, class_avg_acc, miou, mdice, mfscore, fwiou, bf, per_class [{name, iou, acc, dice,
// precision, fscore, bf}], confusion (rows = truth); see ConfusionMatrix and BoundaryF1. Undefined
// values are null.
nlohmann::json metrics_json(const Evaluation& evaluation, const std::vector<ClassInfo>& classes);
// Foreground (class 1) of a two-class evaluation: iou, dice (F1), precision, recall, bf; pixel_acc;
// miou, mdice and fwiou over both classes; confusion.
nlohmann::json binary_metrics_json(const Evaluation& evaluation);
// The images' scores as CSV, a header and a row per image: image, global_acc, miou, bf (empty where
// undefined).
std::string image_scores_csv(const std::vector<ImageScore>& images);

}  // namespace segnet

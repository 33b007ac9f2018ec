#pragma once
// Scoring a model on a labelled list with the SegNet paper's metrics.
#include <segnet/data.h>
#include <segnet/metrics.h>
#include <segnet/segmenter.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <vector>

namespace segnet {

// Predictions are compared with each label at the label's own resolution. `progress(done, total)`
// is called after each image when given.
ConfusionMatrix evaluate(Segmenter& segmenter, const std::vector<SamplePaths>& samples, const LabelSpec& spec,
                         const std::function<void(size_t, size_t)>& progress = {});

// Labels are scored as the model's class ids: a dataset folder whose classes.csv lists another number
// of classes (its void value could be one of the model's classes) is an Error naming classes.csv.
// Binary models, and folders without classes.csv, pass.
void check_dataset_classes(const ModelInfo& info, const std::filesystem::path& data);

// global_acc, class_avg_acc, miou, mdice, mfscore, fwiou, per_class [{name, iou, acc, dice, precision,
// fscore}], confusion (rows = truth); see ConfusionMatrix. Undefined values are null.
nlohmann::json metrics_json(const ConfusionMatrix& matrix, const std::vector<ClassInfo>& classes);
// Foreground (class 1) of a two-class matrix: iou, dice (F1), precision, recall; pixel_acc; miou,
// mdice and fwiou over both classes; confusion.
nlohmann::json binary_metrics_json(const ConfusionMatrix& matrix);

}  // namespace segnet

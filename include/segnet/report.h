#pragma once
// Charts of a run, as PNG files: a training run's curves (from its metrics.csv), and eval's confusion
// matrix and per-class IoU. Drawn with PLplot (its in-memory Cairo driver), written atomically; any
// problem is an Error naming the file.
#include <segnet/metrics.h>

#include <opencv2/core.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace segnet {

// One row of a run's metrics.csv (the columns the charts use). The validation values are NaN in runs
// without a val list.
struct EpochMetrics {
  int64_t epoch = 0;
  double train_loss = NAN;
  double global_acc = NAN, class_avg_acc = NAN, miou = NAN;  // "G", "C", mIoU
  double seconds = NAN;  // the epoch's wall time, where the file has the column
};

// The rows of a metrics.csv as training writes it; columns are found by their header names (epoch,
// train_loss, val_global_acc, val_class_avg_acc, val_miou; seconds if present), so files with more
// columns read too.
// A missing or empty file, a missing column, a short row or a value that is not a number: an Error
// naming the file (and the line).
std::vector<EpochMetrics> read_metrics_csv(const std::filesystem::path& file);

// An Error naming `png` when the charts cannot be drawn here (PLplot's Cairo driver is not
// installed): training and evaluation check it before their work rather than fail after it.
void require_chart_driver(const std::filesystem::path& png);

// curves.png, kCurvesWidth x kCurvesHeight: the train loss per epoch above, the validation G, C and
// mIoU per epoch (0..1) below, each panel with axis labels and a legend. Without validation values, the loss alone.
// At least one row.
constexpr int kCurvesWidth = 1000, kCurvesHeight = 800;
void draw_training_curves(const std::vector<EpochMetrics>& rows, const std::filesystem::path& png);

// The confusion matrix, rows (truth) normalised to the share of the class's pixels given to each
// predicted class, kConfusionWidth x kConfusionHeight: class names on both axes, a colour scale, and
// each cell's value up to kConfusionValuesUpTo classes. Rows of classes absent from the truth are grey.
// `class_names` has one name per class.
constexpr int kConfusionWidth = 1000, kConfusionHeight = 900;
constexpr int64_t kConfusionValuesUpTo = 16;
void draw_confusion(const ConfusionMatrix& matrix, const std::vector<std::string>& class_names,
                    const std::filesystem::path& png);

// IoU per class as horizontal bars, names on the left and values at the bars, with the mean IoU
// marked; class_iou_chart_size(classes) pixels (the height grows with the number of classes).
cv::Size class_iou_chart_size(int64_t num_classes);
void draw_class_iou(const ConfusionMatrix& matrix, const std::vector<std::string>& class_names,
                    const std::filesystem::path& png);

// eval's charts go beside its JSON, named after it: out/val.json -> out/val_confusion.png and
// out/val_class_iou.png.
struct EvalCharts {
  std::filesystem::path confusion, class_iou;
};
EvalCharts eval_chart_paths(const std::filesystem::path& json);
EvalCharts draw_eval_charts(const ConfusionMatrix& matrix, const std::vector<std::string>& class_names,
                            const std::filesystem::path& json);
// The charts again from an eval JSON: its "confusion" and, per class, "per_class" names (two-class
// binary JSON: "background" and "foreground"). An Error naming the file if it is not one.
EvalCharts draw_eval_charts_from_json(const std::filesystem::path& json);

// A run's report: RUN/curves.png from RUN/metrics.csv, and the charts of every eval JSON directly in
// RUN. Returns the files written, curves.png first. No RUN/metrics.csv, or a JSON file there that
// does not parse: an Error naming it.
std::vector<std::filesystem::path> write_run_report(const std::filesystem::path& run);

// The file name of a run's curves (beside metrics.csv).
inline std::filesystem::path curves_path(const std::filesystem::path& run) { return run / "curves.png"; }

}  // namespace segnet

#pragma once
// The SegNet paper's metrics and class balancing.
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <vector>

namespace segnet {

// Counts of (ground truth, prediction) pairs over non-void pixels.
class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int64_t num_classes);
  // From counts() of another matrix (e.g. summed over processes).
  ConfusionMatrix(int64_t num_classes, std::vector<int64_t> counts);

  // `prediction` and `target` hold class ids of the same shape; target pixels that are not a class
  // (kIgnoreLabel) are skipped.
  void add(const torch::Tensor& prediction, const torch::Tensor& target);
  void merge(const ConfusionMatrix& other);

  int64_t num_classes() const { return num_classes_; }
  int64_t count(int64_t truth, int64_t predicted) const;
  const std::vector<int64_t>& counts() const { return counts_; }  // row-major, [truth][predicted]

  double global_accuracy() const;         // correct / all counted pixels ("G")
  std::vector<double> class_accuracy() const;   // recall per class; NaN for classes never in the truth
  std::vector<double> class_precision() const;  // TP / predicted; NaN for classes never predicted
  std::vector<double> class_iou() const;        // NaN where a class is neither true nor predicted
  std::vector<double> class_dice() const;       // 2TP / (2TP + FP + FN); NaN as for IoU
  // MMSegmentation's F-score (beta = 1) from precision P and recall R: 2PR / (P + R), which is the
  // class's Dice where TP > 0. Where TP = 0, P or R is undefined (0/0) or both are 0, and MMSegmentation
  // gets NaN and leaves the class out of its mean (nanmean); the same here, so that mean_fscore is its
  // mFscore (and can exceed mean_dice, which counts such classes as 0).
  std::vector<double> class_fscore() const;
  double class_average_accuracy() const;  // mean of defined class accuracies ("C")
  double mean_iou() const;                // mean of defined class IoUs
  double mean_dice() const;               // mean of defined class Dice scores ("mDice")
  double mean_fscore() const;             // mean of defined class F-scores ("mFscore")
  // Sum over classes of (pixels of the class in the truth / all pixels) x IoU ("FWIoU").
  double frequency_weighted_iou() const;

 private:
  int64_t truth_pixels(int64_t c) const;      // TP + FN
  int64_t predicted_pixels(int64_t c) const;  // TP + FP

  int64_t num_classes_;
  std::vector<int64_t> counts_;
};

// Boundary F1 ("BF", Csurka et al. 2013), the SegNet paper's fourth metric: how closely predicted
// class contours follow the true ones, forgiving a shift of up to `tolerance` x the image diagonal
// (the paper's 0.75%). For each image and each class in its truth, the class's boundary pixels are
// those of the class with a 4-neighbour outside it (the image's edge is no boundary), in the truth
// and in the prediction; precision = predicted boundary pixels within the tolerance of a true one /
// predicted boundary pixels, recall = true boundary pixels within the tolerance of a predicted one /
// true boundary pixels, F1 = 2PR / (P + R): 1 where neither has a boundary (the class fills the image
// in both), 0 where only one has. Predicted boundary pixels on void truth are not scored, as void
// pixels are not in the ConfusionMatrix.
class BoundaryF1 {
 public:
  explicit BoundaryF1(int64_t num_classes, double tolerance = 0.0075);

  // One image's class ids, H x W each; returns the image's score, the mean F1 over the classes in its
  // truth (NaN when its truth is all void).
  double add(const torch::Tensor& prediction, const torch::Tensor& target);

  int64_t num_classes() const { return num_classes_; }
  double mean() const;  // mean of the images' scores ("BF"); NaN before one with a class
  // Per class: the mean F1 over the images whose truth holds the class; NaN for a class in none.
  std::vector<double> class_scores() const;

 private:
  int64_t num_classes_;
  double tolerance_;
  double image_sum_ = 0;
  int64_t images_ = 0;
  std::vector<double> class_sum_;
  std::vector<int64_t> class_images_;
};

// Per-pixel entropy (nats) of class probabilities, classes x H x W -> H x W: Bayesian SegNet's
// uncertainty when the probabilities average Monte Carlo dropout samples.
torch::Tensor predictive_entropy(const torch::Tensor& probabilities);

// Median frequency balancing (Eigen & Fergus): freq(c) = pixels of c / pixels of the images where c
// is present; weight(c) = median over present classes of freq / freq(c). Absent classes get 0.
std::vector<float> median_frequency_weights(const std::vector<int64_t>& class_pixels,
                                            const std::vector<int64_t>& present_pixels);

// Non-negative class weights separated by whitespace, commas or newlines; at least one.
std::vector<float> read_class_weights(const std::filesystem::path& file);

}  // namespace segnet

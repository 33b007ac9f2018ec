#pragma once
// Training SegNet on a labelled dataset (and optionally unlabelled images, with pseudo-labels),
// with per-epoch validation and resumable checkpoints.
#include <segnet/data.h>
#include <segnet/model.h>
#include <segnet/runtime.h>

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace segnet {

struct TrainOptions {
  std::filesystem::path data;
  std::string train_list = "train.txt";
  std::string val_list = "val.txt";  // skipped when absent from `data`
  std::string model = "segnet";
  std::string decoder = "indices";  // indices | transposed | bilinear
  std::vector<int64_t> dilation;    // per encoder stage; empty = 1
  std::string task = "multiclass";  // multiclass | binary (0 / 1-or-255 masks, one sigmoid output)
  std::string loss;                 // binary: bce (default) | dice | bce+dice; multiclass: ce
  Size2 size{360, 480};
  int64_t epochs = 100;
  int64_t batch = 4;
  std::string optimizer = "sgd";  // sgd (momentum 0.9) | adam
  std::optional<double> lr;       // default 0.01 for sgd, 0.001 for adam
  // poly: lr * (1 - step / total_steps)^0.9, per step, so that the last epochs settle instead of
  // oscillating (validation mIoU at a constant rate swings by several points between epochs).
  std::string lr_schedule = "poly";  // poly | constant
  double weight_decay = 5e-4;
  std::string class_weights = "median";  // median | none | path of a weights file
  std::optional<int64_t> num_classes;     // required without classes.csv (multiclass)
  std::optional<int64_t> void_label;
  // Pseudo-label semi-supervised learning: loss = labelled + lambda * pseudo, where pseudo-labels are
  // an EMA teacher's confident predictions on a weak view, learnt from a strong view.
  std::filesystem::path unlabeled;  // folder or list of unlabelled images; empty = supervised only
  double pseudo_weight = 1.0;       // lambda, reached after `pseudo_rampup` epochs
  double pseudo_threshold = 0.9;    // tau: pixels whose top probability is below it are ignored
  int64_t pseudo_rampup = 3;        // epochs over which lambda rises (Gaussian ramp); 0 = none
  double ema_decay = 0.99;          // teacher = decay * teacher + (1 - decay) * student, per step
  std::filesystem::path out;
  bool resume = false;
  uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  Precision precision = Precision::Float32;  // bf16: bf16 compute, fp32 weights and loss
  bool progress = true;                      // progress lines on stderr
};

struct EpochRecord {
  int64_t epoch = 0;
  double train_loss = 0;
  double global_acc = 0, class_avg_acc = 0, miou = 0;  // NaN without a val list
  double seconds = 0;
  double images_per_s = 0;        // labelled images per second
  double data_wait_fraction = 0;  // share of the epoch spent waiting for decoded batches
  double pseudo_confident_fraction = 0;  // share of unlabelled pixels that passed tau; NaN without
};

// What a training step minimises: class-weighted pixel-wise cross-entropy (void ignored) or, for
// binary models, weighted binary cross-entropy, soft Dice, or their sum.
struct Objective {
  bool binary = false;
  std::string loss = "ce";
  torch::Tensor class_weights;
};
torch::Tensor segmentation_loss(const torch::Tensor& logits, const torch::Tensor& labels, const Objective& objective);

// Class ids with void (kIgnoreLabel) where the top probability is below `threshold`.
// `probabilities`: N x classes x H x W (or classes x H x W) -> N x H x W (or H x W), int64.
torch::Tensor confident_labels(const torch::Tensor& probabilities, double threshold);

// The strong view of FixMatch-style pseudo-labelling, on normalised N x 3 x H x W images with
// N x H x W labels: per-image contrast, brightness and colour shifts, a blur on half the images, then
// CutMix (French et al. 2020): a box of half the image's area comes, with its labels, from the
// previous image of the batch. Nothing is warped, so the labels still line up pixel for pixel.
struct AugmentedBatch {
  torch::Tensor images, labels;
};
AugmentedBatch strong_view(const torch::Tensor& images, const torch::Tensor& labels);

// The unlabelled half of a semi-supervised step.
struct PseudoLabelStep {
  SegNet teacher;   // eval mode; updated as an EMA of the student after the step
  Batch unlabeled;  // weak view: resized, randomly flipped
  double weight = 1.0;
  double threshold = 0.9;
  double ema_decay = 0.99;
  double confident_fraction = 0;  // set by the step
};

// One optimizer step; the loss is computed in fp32 whatever the precision of the forward pass.
// With `pseudo`, the student also learns the teacher's confident labels on a strongly augmented
// view of the unlabelled batch, without class weights (the teacher's labels already lean towards
// the rare classes it was weighted to find). Returns the loss.
double train_step(SegNet& model, torch::optim::Optimizer& optimizer, const Batch& batch, const Objective& objective,
                  Precision precision, torch::Device device, PseudoLabelStep* pseudo = nullptr);

// The learning rate after `step` of `total_steps` optimizer steps under `schedule` (poly | constant).
double scheduled_lr(const std::string& schedule, double base_lr, int64_t step, int64_t total_steps);

// Writes out/metrics.csv (a row per epoch), out/last.pt and out/best.pt (best val mIoU, or last
// without a val list). Returns the epochs run by this call.
std::vector<EpochRecord> train(const TrainOptions& options);

}  // namespace segnet

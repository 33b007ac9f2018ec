#pragma once
// Training SegNet on a labelled dataset with per-epoch validation and resumable checkpoints.
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
  Size2 size{360, 480};
  int64_t epochs = 100;
  int64_t batch = 4;
  std::string optimizer = "sgd";  // sgd (momentum 0.9) | adam
  std::optional<double> lr;       // default 0.01 for sgd, 0.001 for adam
  double weight_decay = 5e-4;
  std::string class_weights = "median";  // median | none | path of a weights file
  std::optional<int64_t> num_classes;     // required without classes.csv
  std::optional<int64_t> void_label;
  std::filesystem::path out;
  bool resume = false;
  uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  Precision precision = Precision::Float32;  // bf16: bf16 compute, fp32 weights and loss
  bool progress = true;  // progress lines on stderr
};

struct EpochRecord {
  int64_t epoch = 0;
  double train_loss = 0;
  double global_acc = 0, class_avg_acc = 0, miou = 0;  // NaN without a val list
  double seconds = 0;
  double images_per_s = 0;
  double data_wait_fraction = 0;  // share of the epoch spent waiting for decoded batches
};

// One optimizer step on a batch: class-weighted pixel-wise cross-entropy (void ignored), computed
// in fp32 whatever the precision of the forward pass. Returns the loss.
double train_step(SegNet& model, torch::optim::Optimizer& optimizer, const Batch& batch,
                  const torch::Tensor& class_weights, Precision precision, torch::Device device);

// Writes out/metrics.csv (a row per epoch), out/last.pt and out/best.pt (best val mIoU, or last
// without a val list). Returns the epochs run by this call.
std::vector<EpochRecord> train(const TrainOptions& options);

}  // namespace segnet

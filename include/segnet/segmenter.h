#pragma once
// Inference with a trained model on images of any size.
#include <segnet/checkpoint.h>
#include <segnet/runtime.h>

#include <opencv2/core.hpp>
#include <torch/types.h>

#include <filesystem>

namespace segnet {

struct SegmenterOptions {
  Precision precision = Precision::Float32;
  // Bayesian models: average the softmax of this many dropout samples (Monte Carlo dropout).
  int64_t mc_samples = 1;
  double threshold = 0.5;  // binary models: foreground where its probability reaches this
};

class Segmenter {
 public:
  // Works on its own copy of `model`, prepared for inference: batch norm folded into the
  // convolutions, channels-last, and bf16 weights for Precision::BFloat16.
  Segmenter(ModelInfo info, const SegNet& model, torch::Device device, SegmenterOptions options = {});
  static Segmenter from_checkpoint(const std::filesystem::path& file, torch::Device device,
                                   SegmenterOptions options = {});

  // Normalised N x 3 x H x W input (any H, W) -> fp32 logits N x outputs x H x W (one dropout sample).
  torch::Tensor logits(const torch::Tensor& input);
  // The image is resized to the training size; class probabilities (averaged over the MC samples)
  // are resized back to the image's size (bilinear): classes x H x W at the input's own H x W.
  // Binary models give two rows, background and foreground.
  torch::Tensor probabilities(const cv::Mat& rgb);
  // Class ids (CV_8UC1) from probabilities: the likeliest class, or the threshold for binary models.
  cv::Mat labels_from(const torch::Tensor& probabilities) const;
  cv::Mat segment(const cv::Mat& rgb) { return labels_from(probabilities(rgb)); }

  const ModelInfo& info() const { return info_; }

 private:
  ModelInfo info_;
  SegNet model_;
  torch::Device device_;
  SegmenterOptions options_;
  torch::Dtype dtype_;
};

}  // namespace segnet

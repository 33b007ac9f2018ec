#pragma once
// Inference with a trained model on images of any size.
#include <segnet/checkpoint.h>
#include <segnet/runtime.h>

#include <opencv2/core.hpp>
#include <torch/types.h>

#include <filesystem>

namespace segnet {

class Segmenter {
 public:
  // Works on its own copy of `model`, prepared for inference: batch norm folded into the
  // convolutions, channels-last, and bf16 weights for Precision::BFloat16.
  Segmenter(ModelInfo info, const SegNet& model, torch::Device device, Precision precision = Precision::Float32);
  static Segmenter from_checkpoint(const std::filesystem::path& file, torch::Device device,
                                   Precision precision = Precision::Float32);

  // Normalised N x 3 x H x W input (any H, W) -> fp32 class logits N x classes x H x W.
  torch::Tensor logits(const torch::Tensor& input);
  // The image is resized to the training size; class probabilities are resized back to the
  // image's size (bilinear), so the result is classes x H x W at the input's own H x W.
  torch::Tensor probabilities(const cv::Mat& rgb);
  // Class ids (CV_8UC1) at the image's size.
  cv::Mat segment(const cv::Mat& rgb);

  const ModelInfo& info() const { return info_; }

 private:
  ModelInfo info_;
  SegNet model_;
  torch::Device device_;
  torch::Dtype dtype_;
};

}  // namespace segnet

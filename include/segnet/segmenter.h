#pragma once
// Inference with a trained model on images of any size.
#include <segnet/checkpoint.h>

#include <opencv2/core.hpp>
#include <torch/types.h>

#include <filesystem>

namespace segnet {

class Segmenter {
 public:
  Segmenter(ModelInfo info, SegNet model, torch::Device device);
  static Segmenter from_checkpoint(const std::filesystem::path& file, torch::Device device);

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
};

}  // namespace segnet

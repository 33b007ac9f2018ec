#pragma once
// Inference with a trained model on images of any size, one at a time or in batches.
#include <segnet/checkpoint.h>
#include <segnet/choices.h>

#include <opencv2/core.hpp>
#include <torch/types.h>

#include <filesystem>
#include <memory>
#include <vector>

namespace segnet {

class QuantizedSegNet;

struct SegmenterOptions {
  Precision precision = Precision::Float32;
  // Bayesian models: average the softmax of this many dropout samples (Monte Carlo dropout).
  int64_t mc_samples = 1;
  double threshold = 0.5;  // binary models: foreground where its probability reaches this
};

// Logits N x outputs x H x W -> class probabilities N x classes x H x W: the softmax, or for binary
// models (one output) two rows, background and foreground.
torch::Tensor class_probabilities(const torch::Tensor& logits, bool binary);

class Segmenter {
 public:
  // Works on its own copy of `model`, prepared for inference: batch norm folded into the
  // convolutions, channels-last, and bf16 weights for Precision::BFloat16; for Precision::Int8 int8
  // convolutions with `info`'s activation ranges (quantize.h), on the CPU. Bad options are OptionErrors.
  Segmenter(ModelInfo info, const SegNet& model, torch::Device device, SegmenterOptions options = {});
  static Segmenter from_checkpoint(const std::filesystem::path& file, torch::Device device,
                                   SegmenterOptions options = {});

  // Class ids (CV_8UC1) of an RGB image (CV_8UC3), at the image's own size.
  cv::Mat segment(const cv::Mat& rgb);
  // The same for a batch, in one forward pass; the images may differ in size.
  std::vector<cv::Mat> segment(const std::vector<cv::Mat>& images);

  // The steps of segment(), for pipelines that prepare inputs elsewhere:
  // the network's input for an image: resized to the training size and normalised, 3 x h x w.
  torch::Tensor input(const cv::Mat& rgb) const;
  // Class probabilities of a batch of inputs (N x 3 x h x w), averaged over the MC samples, each resized
  // (bilinear) to its image's size: classes x H x W.
  std::vector<torch::Tensor> probabilities(const torch::Tensor& inputs, const std::vector<cv::Size>& sizes);
  torch::Tensor probabilities(const cv::Mat& rgb);
  // Class ids (CV_8UC1) from probabilities: the likeliest class, or the threshold for binary models.
  cv::Mat labels_from(const torch::Tensor& probabilities) const;
  // Normalised N x 3 x H x W input (any H, W) -> fp32 logits N x outputs x H x W (one dropout sample).
  torch::Tensor logits(const torch::Tensor& input);

  const ModelInfo& info() const { return info_; }
  const SegmenterOptions& options() const { return options_; }

 private:
  ModelInfo info_;
  SegNet model_;
  torch::Device device_;
  SegmenterOptions options_;
  torch::Dtype dtype_;
  std::shared_ptr<QuantizedSegNet> quantized_;  // Precision::Int8 only
};

}  // namespace segnet

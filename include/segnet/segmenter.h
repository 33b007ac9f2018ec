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
  // Test-time augmentation: with Tta::Flip every view also runs mirrored, in the same forward pass.
  Tta tta = Tta::None;
  // Multi-scale inference: the factors (each in (0, 4]) of the training scale that the image runs at;
  // their probabilities, resized to the image, are averaged. {1}: the training scale only.
  std::vector<double> tta_scales = {1.0};
  // Sliding window, which keeps the aspect ratio: the image is scaled by one factor, the smallest at which
  // it covers a training-size tile (times each of tta_scales), and covered by tiles of the training size
  // that overlap by window_overlap (padded with the normalised zero where the image is smaller); each
  // pixel averages the tiles that cover it. It changes nothing for images of the training size's shape and
  // is meant for differently shaped ones (e.g. wider), which plain inference squashes to the training size.
  // Each view's tiles run 8 per forward pass, so the network's memory does not grow with an image's length.
  bool sliding_window = false;
  // Sliding window: the share of a tile's height and width that neighbouring tiles overlap, in [0, 1);
  // the last tile of a row or column ends flush with the image, so it may overlap more.
  double window_overlap = 1.0 / 3;
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
  // The same for a batch, in one forward pass per input size (see input()); the images may differ in size.
  std::vector<cv::Mat> segment(const std::vector<cv::Mat>& images);

  // The steps of segment(), for pipelines that prepare inputs elsewhere:
  // the network's input for an image, normalised, 3 x h x w: resized to the training size times the
  // largest of tta_scales, or with sliding_window scaled, keeping its aspect ratio, as described there.
  torch::Tensor input(const cv::Mat& rgb) const;
  // Class probabilities of a batch of inputs of one size (N x 3 x h x w), averaged over the MC samples and
  // the test-time augmentations, each resized (bilinear) to its image's size: classes x H x W.
  std::vector<torch::Tensor> probabilities(const torch::Tensor& inputs, const std::vector<cv::Size>& sizes);
  // The same for inputs that may differ in size (sliding windows of differently shaped images).
  std::vector<torch::Tensor> probabilities(const std::vector<torch::Tensor>& inputs, const std::vector<cv::Size>& sizes);
  torch::Tensor probabilities(const cv::Mat& rgb);
  // Class ids (CV_8UC1) from probabilities: the likeliest class, or the threshold for binary models.
  cv::Mat labels_from(const torch::Tensor& probabilities) const;
  // Normalised N x 3 x H x W input (any H, W) -> fp32 logits N x outputs x H x W (one dropout sample).
  torch::Tensor logits(const torch::Tensor& input);

  const ModelInfo& info() const { return info_; }
  const SegmenterOptions& options() const { return options_; }

 private:
  // Probabilities of N views run whole, averaged over the MC samples and the flip: N x classes x h x w.
  torch::Tensor view_probabilities(const torch::Tensor& views);
  // The same with the views covered by overlapping tiles of the training size (sliding window).
  torch::Tensor window_probabilities(const torch::Tensor& views);

  ModelInfo info_;
  SegNet model_{nullptr};  // float precisions only
  torch::Device device_;
  SegmenterOptions options_;
  torch::Dtype dtype_;
  std::shared_ptr<QuantizedSegNet> quantized_;  // Precision::Int8 only
};

}  // namespace segnet

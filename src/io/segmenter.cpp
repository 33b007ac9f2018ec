#include <segnet/error.h>
#include <segnet/segmenter.h>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

namespace segnet {

Segmenter::Segmenter(ModelInfo info, const SegNet& model, torch::Device device, SegmenterOptions options)
    : info_(std::move(info)), model_(copy_model(model)), device_(device), options_(options),
      dtype_(options.precision == Precision::BFloat16 ? torch::kBFloat16 : torch::kFloat) {
  if (options_.mc_samples < 1) throw Error("--mc-samples: must be at least 1");
  if (options_.mc_samples > 1 && !model_->has_dropout())
    throw Error("--mc-samples: model '" + info_.model + "' has no dropout to sample (use a bayesian-* model)");
  if (!(options_.threshold > 0 && options_.threshold < 1)) throw Error("--threshold: must be between 0 and 1");
  model_->eval();
  model_->set_mc_dropout(options_.mc_samples > 1);
  model_->fold_batch_norm();
  model_->to(device_, dtype_);
  to_channels_last(*model_);
}

Segmenter Segmenter::from_checkpoint(const std::filesystem::path& file, torch::Device device,
                                     SegmenterOptions options) {
  Checkpoint ck = load_checkpoint(file);
  return Segmenter(std::move(ck.info), ck.model, device, options);
}

torch::Tensor Segmenter::logits(const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  const auto x = input.to(device_, dtype_).contiguous(at::MemoryFormat::ChannelsLast);
  return model_->forward(x).to(torch::kFloat);
}

torch::Tensor Segmenter::probabilities(const cv::Mat& rgb) {
  torch::NoGradGuard no_grad;
  const auto input = image_to_tensor(resize_image(rgb, info_.size), info_.norm).unsqueeze(0);
  torch::Tensor probs;
  for (int64_t s = 0; s < options_.mc_samples; ++s) {
    const auto z = logits(input);
    const auto p = info_.binary() ? torch::cat({1 - torch::sigmoid(z), torch::sigmoid(z)}, 1) : torch::softmax(z, 1);
    probs = s == 0 ? p : probs.add_(p);
  }
  probs.div_(static_cast<double>(options_.mc_samples));
  if (probs.size(2) != rgb.rows || probs.size(3) != rgb.cols)
    probs = torch::nn::functional::interpolate(
        probs, torch::nn::functional::InterpolateFuncOptions()
                   .size(std::vector<int64_t>{rgb.rows, rgb.cols})
                   .mode(torch::kBilinear)
                   .align_corners(false));
  return probs.squeeze(0).to(torch::kCPU).contiguous();
}

cv::Mat Segmenter::labels_from(const torch::Tensor& probabilities) const {
  const auto ids = (info_.binary() ? probabilities[1].ge(options_.threshold) : probabilities.argmax(0))
                       .to(torch::kUInt8)
                       .contiguous();
  return cv::Mat(static_cast<int>(ids.size(0)), static_cast<int>(ids.size(1)), CV_8UC1, ids.data_ptr<uint8_t>()).clone();
}

}  // namespace segnet

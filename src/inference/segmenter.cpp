#include <segnet/error.h>
#include <segnet/quantize.h>
#include <segnet/segmenter.h>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

namespace segnet {

torch::Tensor class_probabilities(const torch::Tensor& logits, bool binary) {
  if (!binary) return torch::softmax(logits, 1);
  const auto foreground = torch::sigmoid(logits);
  return torch::cat({1 - foreground, foreground}, 1);
}

Segmenter::Segmenter(ModelInfo info, const SegNet& model, torch::Device device, SegmenterOptions options)
    : info_(std::move(info)), model_(copy_model(model)), device_(device), options_(options),
      dtype_(options.precision == Precision::BFloat16 ? torch::kBFloat16 : torch::kFloat) {
  if (options_.mc_samples < 1) throw OptionError("mc_samples", "must be at least 1");
  if (options_.mc_samples > 1 && !model_->has_dropout())
    throw OptionError("mc_samples", "needs a model with dropout to sample; '" + to_string(info_.model) +
                                        "' has none (use a bayesian-* model)");
  if (!(options_.threshold > 0 && options_.threshold < 1)) throw OptionError("threshold", "must be between 0 and 1");
  if (options_.precision == Precision::Int8) {
    if (!device_.is_cpu()) throw OptionError("precision", "int8 runs on the CPU only, not on '" + device_.str() + "'");
    if (options_.mc_samples > 1) throw OptionError("mc_samples", "int8 inference does not sample dropout");
    if (info_.activation_ranges.empty())
      throw OptionError("precision", "int8 needs activation ranges calibrated on images; this model has none");
    quantized_ = std::make_shared<QuantizedSegNet>(model, info_.activation_ranges);
    return;  // the fp32 copy is not needed
  }
  model_->eval();
  model_->set_mc_dropout(options_.mc_samples > 1);
  model_->fold_batch_norm();
  model_->to(device_, dtype_);
  to_channels_last(*model_);
}

Segmenter Segmenter::from_checkpoint(const std::filesystem::path& file, torch::Device device,
                                     SegmenterOptions options) {
  Checkpoint ck = load_checkpoint(file);
  if (options.precision == Precision::Int8 && ck.info.activation_ranges.empty())
    throw Error(file, "holds no int8 activation ranges; calibrate it on training images first");
  return Segmenter(std::move(ck.info), ck.model, device, options);
}

torch::Tensor Segmenter::logits(const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  if (quantized_) return quantized_->forward(input);
  const auto x = input.to(device_, dtype_).contiguous(at::MemoryFormat::ChannelsLast);
  return model_->forward(x).to(torch::kFloat);
}

torch::Tensor Segmenter::input(const cv::Mat& rgb) const {
  if (rgb.empty() || rgb.type() != CV_8UC3) throw Error("segment: images must be 8-bit, 3-channel RGB");
  return image_to_tensor(resize_image(rgb, info_.size), info_.norm);
}

std::vector<torch::Tensor> Segmenter::probabilities(const torch::Tensor& inputs, const std::vector<cv::Size>& sizes) {
  TORCH_CHECK(inputs.dim() == 4 && inputs.size(0) == static_cast<int64_t>(sizes.size()),
              "probabilities: one size per input image");
  torch::NoGradGuard no_grad;
  torch::Tensor mean;
  for (int64_t s = 0; s < options_.mc_samples; ++s) {
    const auto p = class_probabilities(logits(inputs), info_.binary());
    mean = s == 0 ? p : mean.add_(p);
  }
  mean.div_(static_cast<double>(options_.mc_samples));
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto p = mean.slice(0, i, i + 1);
    if (p.size(2) != sizes[i].height || p.size(3) != sizes[i].width)
      p = torch::nn::functional::interpolate(p, torch::nn::functional::InterpolateFuncOptions()
                                                    .size(std::vector<int64_t>{sizes[i].height, sizes[i].width})
                                                    .mode(torch::kBilinear)
                                                    .align_corners(false));
    out.push_back(p.squeeze(0).to(torch::kCPU).contiguous());
  }
  return out;
}

torch::Tensor Segmenter::probabilities(const cv::Mat& rgb) {
  return probabilities(input(rgb).unsqueeze(0), {rgb.size()})[0];
}

cv::Mat Segmenter::labels_from(const torch::Tensor& probabilities) const {
  return label_image(info_.binary() ? probabilities[1].ge(options_.threshold) : probabilities.argmax(0));
}

std::vector<cv::Mat> Segmenter::segment(const std::vector<cv::Mat>& images) {
  if (images.empty()) return {};
  std::vector<torch::Tensor> inputs;
  std::vector<cv::Size> sizes;
  for (const auto& image : images) {
    inputs.push_back(input(image));
    sizes.push_back(image.size());
  }
  std::vector<cv::Mat> ids;
  for (const auto& p : probabilities(torch::stack(inputs), sizes)) ids.push_back(labels_from(p));
  return ids;
}

cv::Mat Segmenter::segment(const cv::Mat& rgb) { return labels_from(probabilities(rgb)); }

}  // namespace segnet

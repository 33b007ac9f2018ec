#include <segnet/segmenter.h>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

namespace segnet {

Segmenter::Segmenter(ModelInfo info, const SegNet& model, torch::Device device, Precision precision)
    : info_(std::move(info)), model_(info_.options()), device_(device),
      dtype_(precision == Precision::BFloat16 ? torch::kBFloat16 : torch::kFloat) {
  {
    torch::NoGradGuard no_grad;
    auto params = model->named_parameters(), buffers = model->named_buffers();
    for (auto& p : model_->named_parameters()) p.value().copy_(params[p.key()]);
    for (auto& b : model_->named_buffers()) b.value().copy_(buffers[b.key()]);
  }
  model_->eval();
  model_->fold_batch_norm();
  model_->to(device_, dtype_);
  to_channels_last(*model_);
}

Segmenter Segmenter::from_checkpoint(const std::filesystem::path& file, torch::Device device, Precision precision) {
  Checkpoint ck = load_checkpoint(file);
  return Segmenter(std::move(ck.info), ck.model, device, precision);
}

torch::Tensor Segmenter::logits(const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  const auto x = input.to(device_, dtype_).contiguous(at::MemoryFormat::ChannelsLast);
  return model_->forward(x).to(torch::kFloat);
}

torch::Tensor Segmenter::probabilities(const cv::Mat& rgb) {
  torch::NoGradGuard no_grad;
  auto probs = torch::softmax(logits(image_to_tensor(resize_image(rgb, info_.size), info_.norm).unsqueeze(0)), 1);
  if (probs.size(2) != rgb.rows || probs.size(3) != rgb.cols)
    probs = torch::nn::functional::interpolate(
        probs, torch::nn::functional::InterpolateFuncOptions()
                   .size(std::vector<int64_t>{rgb.rows, rgb.cols})
                   .mode(torch::kBilinear)
                   .align_corners(false));
  return probs.squeeze(0).to(torch::kCPU).contiguous();
}

cv::Mat Segmenter::segment(const cv::Mat& rgb) {
  const auto ids = probabilities(rgb).argmax(0).to(torch::kUInt8).contiguous();
  return cv::Mat(rgb.rows, rgb.cols, CV_8UC1, ids.data_ptr<uint8_t>()).clone();
}

}  // namespace segnet

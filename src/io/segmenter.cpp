#include <segnet/segmenter.h>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

namespace segnet {

Segmenter::Segmenter(ModelInfo info, SegNet model, torch::Device device)
    : info_(std::move(info)), model_(std::move(model)), device_(device) {
  model_->to(device_);
  model_->eval();
}

Segmenter Segmenter::from_checkpoint(const std::filesystem::path& file, torch::Device device) {
  Checkpoint ck = load_checkpoint(file);
  return Segmenter(std::move(ck.info), ck.model, device);
}

torch::Tensor Segmenter::probabilities(const cv::Mat& rgb) {
  torch::NoGradGuard no_grad;
  const auto input = image_to_tensor(resize_image(rgb, info_.size), info_.norm).unsqueeze(0).to(device_);
  auto probs = torch::softmax(model_->forward(input), 1);
  if (probs.size(2) != rgb.rows || probs.size(3) != rgb.cols)
    probs = torch::nn::functional::interpolate(
        probs, torch::nn::functional::InterpolateFuncOptions()
                   .size(std::vector<int64_t>{rgb.rows, rgb.cols})
                   .mode(torch::kBilinear)
                   .align_corners(false));
  return probs.squeeze(0).to(torch::kCPU);
}

cv::Mat Segmenter::segment(const cv::Mat& rgb) {
  const auto ids = probabilities(rgb).argmax(0).to(torch::kUInt8).contiguous();
  return cv::Mat(rgb.rows, rgb.cols, CV_8UC1, ids.data_ptr<uint8_t>()).clone();
}

}  // namespace segnet

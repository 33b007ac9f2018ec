#include <segnet/image.h>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

namespace segnet {

cv::Mat colorize(const cv::Mat& labels, const std::vector<ClassInfo>& classes) {
  cv::Mat lut(1, 256, CV_8UC3, cv::Scalar(0, 0, 0));
  for (size_t c = 0; c < classes.size() && c < 256; ++c)
    lut.at<cv::Vec3b>(static_cast<int>(c)) = cv::Vec3b(classes[c].rgb[0], classes[c].rgb[1], classes[c].rgb[2]);
  cv::Mat three, color;
  cv::cvtColor(labels, three, cv::COLOR_GRAY2RGB);
  cv::LUT(three, lut, color);
  return color;
}

cv::Mat heatmap(const torch::Tensor& values, double max_value) {
  const cv::Mat grey = label_image((values.to(torch::kFloat) * (255.0 / max_value)).clamp(0, 255));
  cv::Mat bgr, rgb;
  cv::applyColorMap(grey, bgr, cv::COLORMAP_INFERNO);
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

cv::Mat overlay(const cv::Mat& rgb, const cv::Mat& color, double alpha) {
  cv::Mat out;
  cv::addWeighted(color, alpha, rgb, 1.0 - alpha, 0.0, out);
  return out;
}

}  // namespace segnet

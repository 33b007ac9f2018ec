#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/image.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <fstream>
#include <unistd.h>

namespace segnet {

void write_atomically(const fs::path& file, const std::function<void(const fs::path&)>& write) {
  std::error_code ec;
  if (file.has_parent_path()) fs::create_directories(file.parent_path(), ec);
  if (ec) throw Error(file.parent_path(), "cannot create folder: " + ec.message());
  const fs::path tmp = file.string() + ".tmp" + std::to_string(::getpid());
  try {
    write(tmp);
    fs::rename(tmp, file, ec);
    if (ec) throw Error(file, "cannot write: " + ec.message());
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

void write_text(const fs::path& file, const std::string& text) {
  write_atomically(file, [&](const fs::path& tmp) {
    std::ofstream out(tmp);
    if (!(out << text) || !out.flush()) throw Error(file, "cannot write");
  });
}

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
  const auto bytes = (values.to(torch::kFloat) * (255.0 / max_value)).clamp(0, 255).to(torch::kUInt8).contiguous();
  const cv::Mat grey(static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), CV_8UC1, bytes.data_ptr<uint8_t>());
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

void write_png(const fs::path& file, const cv::Mat& image) {
  cv::Mat bgr = image;
  if (image.channels() == 3) cv::cvtColor(image, bgr, cv::COLOR_RGB2BGR);
  std::vector<uint8_t> bytes;
  if (!cv::imencode(".png", bgr, bytes)) throw Error(file, "cannot encode PNG");
  write_atomically(file, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) throw Error(file, "cannot write");
  });
}

}  // namespace segnet

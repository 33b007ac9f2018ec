#pragma once
// Turning class maps into pictures people can look at, and writing them safely.
#include <segnet/data.h>

#include <opencv2/core.hpp>
#include <torch/types.h>

#include <filesystem>
#include <vector>

namespace segnet {

// Class ids (CV_8UC1) -> RGB colours of the classes; ids that are not a class become black.
cv::Mat colorize(const cv::Mat& labels, const std::vector<ClassInfo>& classes);
// Values 0..max_value as an RGB heat map (inferno: dark = low).
cv::Mat heatmap(const torch::Tensor& values, double max_value);
// `alpha` of the colours over the image.
cv::Mat overlay(const cv::Mat& rgb, const cv::Mat& color, double alpha = 0.5);
// PNG through a temporary file and a rename; 3-channel images are taken as RGB.
void write_png(const std::filesystem::path& file, const cv::Mat& image);

}  // namespace segnet

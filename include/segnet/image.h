#pragma once
// Turning class maps into pictures people can look at.
#include <segnet/data.h>

#include <opencv2/core.hpp>
#include <torch/types.h>

#include <vector>

namespace segnet {

// Class ids (CV_8UC1) -> RGB colours of the classes; ids that are not a class become black.
cv::Mat colorize(const cv::Mat& labels, const std::vector<ClassInfo>& classes);
// Values 0..max_value (an H x W tensor) as an RGB heat map (inferno: dark = low).
cv::Mat heatmap(const torch::Tensor& values, double max_value);
// `alpha` of the colours over the image: alpha * color + (1 - alpha) * rgb, per pixel and channel.
cv::Mat overlay(const cv::Mat& rgb, const cv::Mat& color, double alpha = 0.5);

}  // namespace segnet

#pragma once
// The colour step of augment_sample, with its factors given (tests compare it with torchvision's).
#include <opencv2/core.hpp>

namespace segnet {

// torchvision's adjust_brightness, adjust_contrast, adjust_saturation and adjust_hue, in that order,
// on an RGB CV_8UC3 image in place: factors of 1 (hue 0, in turns) leave a step out.
void adjust_colour(cv::Mat& rgb, double brightness, double contrast, double saturation, double hue);

}  // namespace segnet

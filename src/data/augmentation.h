#pragma once
// The colour step of augment_sample, with its factors given (tests compare it with torchvision's),
// and the scale-range check that labelled and pseudo-labelled augmentation share.
#include <opencv2/core.hpp>

#include <string>

namespace segnet {

// OptionErrors named PREFIX.min_scale or PREFIX.max_scale unless 0 < min_scale <= max_scale <= 8.
void validate_scale_range(double min_scale, double max_scale, const std::string& prefix);

// torchvision's adjust_brightness, adjust_contrast, adjust_saturation and adjust_hue, in that order,
// on an RGB CV_8UC3 image in place: factors of 1 (hue 0, in turns) leave a step out.
void adjust_colour(cv::Mat& rgb, double brightness, double contrast, double saturation, double hue);

}  // namespace segnet

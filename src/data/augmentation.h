#pragma once
// The colour step of augment_sample, with its factors given (tests compare it with torchvision's),
// and the scale-range check and crop-or-pad placement that labelled and pseudo-labelled augmentation
// share.
#include <opencv2/core.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace segnet {

// OptionErrors named PREFIX.min_scale or PREFIX.max_scale unless 0 < min_scale <= max_scale <= 8.
void validate_scale_range(double min_scale, double max_scale, const std::string& prefix);

// Where a length `from` goes into a length `to`: a random window of it (a crop) when it is longer, or
// all of it at a random place (a paste onto padding) when it is shorter. `below(n)` draws an integer
// in [0, n), called only when the lengths differ, so that each caller keeps its own random stream.
struct Placement {
  int64_t source = 0, target = 0, length = 0;  // from[source, source + length) -> to[target, target + length)
};
Placement place(int64_t from, int64_t to, const std::function<int64_t(int64_t)>& below);

// torchvision's adjust_brightness, adjust_contrast, adjust_saturation and adjust_hue, in that order,
// on an RGB CV_8UC3 image in place: factors of 1 (hue 0, in turns) leave a step out.
void adjust_colour(cv::Mat& rgb, double brightness, double contrast, double saturation, double hue);

}  // namespace segnet

#pragma once
// A reproducible RGB image of uniform noise, for inference tests that need an input with no structure.
#include <opencv2/core.hpp>

#include <cstdint>

namespace segnet::test {

inline cv::Mat noise_image(int rows, int cols, uint64_t seed) {
  cv::Mat m(rows, cols, CV_8UC3);
  cv::theRNG().state = seed;
  cv::randu(m, 0, 256);
  return m;
}

}  // namespace segnet::test

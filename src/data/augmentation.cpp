#include <segnet/data.h>
#include <segnet/error.h>

#include "common/format_number.h"
#include "data/augmentation.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <random>

namespace segnet {

AugmentOptions augment_preset(AugmentPreset preset) {
  AugmentOptions none{1, 1, false, 0, 0, 0, 0};
  switch (preset) {
    case AugmentPreset::None: return none;
    case AugmentPreset::Flip: return {1, 1, true, 0, 0, 0, 0};
    case AugmentPreset::Color: return {1, 1, true, 0.25, 0.25, 0.25, 0.05};
    case AugmentPreset::Light: return {0.75, 1.5, true, 0.1, 0.1, 0.1, 0.02};
    case AugmentPreset::Standard: return {0.5, 2.0, true, 0.25, 0.25, 0.25, 0.05};
    case AugmentPreset::Strong: return {0.5, 2.0, true, 0.4, 0.4, 0.4, 0.1};
  }
  return none;
}

void validate_scale_range(double min_scale, double max_scale, const std::string& prefix) {
  if (!(min_scale > 0)) throw OptionError(prefix + ".min_scale", "must be above 0, not " + format_number(min_scale));
  if (!(max_scale >= min_scale))
    throw OptionError(prefix + ".max_scale",
                      format_number(max_scale) + " is below " + prefix + ".min_scale " + format_number(min_scale));
  if (!(max_scale <= 8)) throw OptionError(prefix + ".max_scale", "must be at most 8, not " + format_number(max_scale));
}

Placement place(int64_t from, int64_t to, const std::function<int64_t(int64_t)>& below) {
  const int64_t slack = std::abs(from - to);
  const int64_t offset = slack == 0 ? 0 : below(slack + 1);
  return from > to ? Placement{offset, 0, to} : Placement{0, offset, from};
}

void validate(const AugmentOptions& o) {
  validate_scale_range(o.min_scale, o.max_scale, "augment");
  for (const auto& [name, value] : {std::pair{"augment.brightness", o.brightness},
                                    std::pair{"augment.contrast", o.contrast},
                                    std::pair{"augment.saturation", o.saturation}})
    if (!(value >= 0 && value <= 1)) throw OptionError(name, "must be in [0, 1], not " + format_number(value));
  if (!(o.hue >= 0 && o.hue <= 0.5)) throw OptionError("augment.hue", "must be in [0, 0.5] of a turn, not " + format_number(o.hue));
}

namespace {

double uniform(std::mt19937_64& rng, double low, double high) {
  return low == high ? low : std::uniform_real_distribution<double>(low, high)(rng);
}

}  // namespace

void adjust_colour(cv::Mat& rgb, double brightness, double contrast, double saturation, double hue) {
  // Each blend is clamped to 0..255 as torchvision does; the image is rounded to 8 bits once, at the end.
  cv::Mat f, grey;
  rgb.convertTo(f, CV_32FC3, brightness);
  cv::min(f, 255.0, f);
  if (contrast != 1) {
    cv::cvtColor(f, grey, cv::COLOR_RGB2GRAY);
    const double mean = cv::mean(grey)[0];
    f.convertTo(f, -1, contrast, (1 - contrast) * mean);
    cv::min(cv::max(f, 0.0), 255.0, f);
  }
  if (saturation != 1) {
    cv::cvtColor(f, grey, cv::COLOR_RGB2GRAY);
    cv::Mat grey3;
    cv::cvtColor(grey, grey3, cv::COLOR_GRAY2RGB);
    cv::addWeighted(f, saturation, grey3, 1 - saturation, 0, f);
    cv::min(cv::max(f, 0.0), 255.0, f);
  }
  if (hue != 0) {
    f *= 1.0 / 255;
    cv::Mat hsv;
    cv::cvtColor(f, hsv, cv::COLOR_RGB2HSV);  // float: H in degrees
    for (int y = 0; y < hsv.rows; ++y) {
      auto* p = hsv.ptr<cv::Vec3f>(y);
      for (int x = 0; x < hsv.cols; ++x) p[x][0] = static_cast<float>(std::fmod(p[x][0] + 360.0 * (1 + hue), 360.0));
    }
    cv::cvtColor(hsv, f, cv::COLOR_HSV2RGB);
    f *= 255;
  }
  f.convertTo(rgb, CV_8UC3);  // rounds and saturates
}


Sample augment_sample(const Sample& sample, Size2 size, const AugmentOptions& o, uint64_t seed, const cv::Scalar& pad_rgb) {
  std::mt19937_64 rng(seed);
  const double scale = uniform(rng, o.min_scale, o.max_scale);
  const Size2 scaled{std::max<int64_t>(1, std::llround(size.height * scale)),
                     std::max<int64_t>(1, std::llround(size.width * scale))};
  Sample s = resize_sample(sample, scaled);
  const bool flip = o.flip && (rng() & 1);
  if (flip) {  // into new buffers: `sample` may be a cached one
    Sample flipped;
    cv::flip(s.image, flipped.image, 1);
    cv::flip(s.label, flipped.label, 1);
    s = flipped;
  }
  if (scaled.height != size.height || scaled.width != size.width) {
    const auto below = [&rng](int64_t n) { return static_cast<int64_t>(rng() % static_cast<uint64_t>(n)); };
    const Placement y = place(scaled.height, size.height, below), x = place(scaled.width, size.width, below);
    const cv::Size target(static_cast<int>(size.width), static_cast<int>(size.height));
    Sample placed{cv::Mat(target, CV_8UC3, pad_rgb), cv::Mat(target, CV_8UC1, cv::Scalar(kIgnoreLabel))};
    const cv::Rect from(int(x.source), int(y.source), int(x.length), int(y.length)),
        to(int(x.target), int(y.target), int(x.length), int(y.length));
    s.image(from).copyTo(placed.image(to));
    s.label(from).copyTo(placed.label(to));
    s = placed;
  }
  if (o.brightness > 0 || o.contrast > 0 || o.saturation > 0 || o.hue > 0) {
    // Factors drawn in [1 - x, 1 + x] as torchvision's ColorJitter draws them (its order is random, ours fixed).
    const double brightness = uniform(rng, 1 - o.brightness, 1 + o.brightness);
    const double contrast = uniform(rng, 1 - o.contrast, 1 + o.contrast);
    const double saturation = uniform(rng, 1 - o.saturation, 1 + o.saturation);
    const double hue = uniform(rng, -o.hue, o.hue);
    if (s.image.data == sample.image.data) s.image = s.image.clone();
    adjust_colour(s.image, brightness, contrast, saturation, hue);
  }
  return s;
}

}  // namespace segnet

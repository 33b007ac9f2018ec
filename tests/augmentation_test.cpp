// Training augmentation: labels stay with their pixels, padding is void, colours follow torchvision.
#include <segnet/data.h>
#include <segnet/error.h>

#include "data/augmentation.h"
#include "expect_error.h"
#include "python.h"

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include <random>
#include <sstream>

using namespace segnet;
using segnet::test::contains;
using segnet::test::error_of;

namespace {

// Class k's colour; far apart so that a pixel's class can be told from its colour away from edges.
cv::Vec3b class_colour(int k) { return {static_cast<uint8_t>(40 + 50 * k), static_cast<uint8_t>(200 - 40 * k), 90}; }

// 60x80: four vertical stripes of classes 0..3, the top 12 rows void (their colour is class 0's).
Sample striped_sample() {
  Sample s{cv::Mat(60, 80, CV_8UC3), cv::Mat(60, 80, CV_8UC1)};
  for (int y = 0; y < 60; ++y)
    for (int x = 0; x < 80; ++x) {
      const int k = x / 20;
      s.image.at<cv::Vec3b>(y, x) = class_colour(y < 12 ? 0 : k);
      s.label.at<uint8_t>(y, x) = static_cast<uint8_t>(y < 12 ? kIgnoreLabel : k);
    }
  return s;
}

int nearest_class(const cv::Vec3b& c) {
  int best = 0;
  double best_distance = 1e9;
  for (int k = 0; k < 4; ++k) {
    const double d = cv::norm(cv::Vec3d(c) - cv::Vec3d(class_colour(k)));
    if (d < best_distance) best = k, best_distance = d;
  }
  return best;
}

AugmentOptions geometry_only() {
  AugmentOptions o = augment_preset(AugmentPreset::Standard);
  o.brightness = o.contrast = o.saturation = o.hue = 0;
  return o;
}

}  // namespace

TEST(AugmentSample, LabelsMoveWithTheirPixelsAndPaddingIsVoid) {
  const Sample sample = striped_sample();
  const cv::Scalar pad(7, 8, 9);
  int cropped = 0, padded = 0, flipped = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const Sample a = augment_sample(sample, {30, 40}, geometry_only(), seed, pad);
    ASSERT_EQ(a.image.size(), cv::Size(40, 30));
    ASSERT_EQ(a.label.size(), cv::Size(40, 30));
    int agree = 0, labelled = 0, pad_pixels = 0;
    for (int y = 0; y < 30; ++y)
      for (int x = 0; x < 40; ++x) {
        const cv::Vec3b c = a.image.at<cv::Vec3b>(y, x);
        const int label = a.label.at<uint8_t>(y, x);
        if (c == cv::Vec3b(7, 8, 9)) {
          ++pad_pixels;
          EXPECT_EQ(label, kIgnoreLabel) << "seed " << seed << " padded pixel (" << x << ", " << y << ")";
        } else if (label != kIgnoreLabel) {
          ++labelled;
          agree += nearest_class(c) == label;
        }
      }
    // Only pixels on stripe edges (interpolated colours) may disagree.
    EXPECT_GE(agree, labelled * 9 / 10) << "seed " << seed;
    padded += pad_pixels > 0;
    cropped += pad_pixels == 0;
    // Class 0 is the leftmost stripe unless the sample was mirrored.
    int left = -1, right = -1;
    for (int x = 0; x < 40 && left < 0; ++x)
      if (a.label.at<uint8_t>(29, x) != kIgnoreLabel) left = a.label.at<uint8_t>(29, x);
    for (int x = 39; x >= 0 && right < 0; --x)
      if (a.label.at<uint8_t>(29, x) != kIgnoreLabel) right = a.label.at<uint8_t>(29, x);
    flipped += left > right;
  }
  EXPECT_GT(cropped, 0);
  EXPECT_GT(padded, 0);
  EXPECT_GT(flipped, 0);
  EXPECT_LT(flipped, 40);
}

TEST(AugmentSample, SameSeedGivesTheSameSampleAndOtherSeedsOthers) {
  const Sample sample = striped_sample();
  const AugmentOptions o = augment_preset(AugmentPreset::Strong);
  const Sample a = augment_sample(sample, {30, 40}, o, 11, {}), b = augment_sample(sample, {30, 40}, o, 11, {});
  EXPECT_EQ(cv::norm(a.image, b.image, cv::NORM_INF), 0);
  EXPECT_EQ(cv::norm(a.label, b.label, cv::NORM_INF), 0);
  const Sample c = augment_sample(sample, {30, 40}, o, 12, {});
  EXPECT_GT(cv::norm(a.image, c.image, cv::NORM_INF), 0);
}

TEST(AugmentSample, WithoutScaleOrFlipTheLabelIsTheResizedLabelAndOnlyColoursChange) {
  const Sample sample = striped_sample();
  AugmentOptions o = augment_preset(AugmentPreset::Strong);
  o.min_scale = o.max_scale = 1;
  o.flip = false;
  const Sample resized = resize_sample(sample, {30, 40});
  const Sample a = augment_sample(sample, {30, 40}, o, 3, {});
  EXPECT_EQ(cv::norm(a.label, resized.label, cv::NORM_INF), 0);
  EXPECT_GT(cv::norm(a.image, resized.image, cv::NORM_INF), 0);
  // The input is left alone (the loader passes its cached samples).
  EXPECT_EQ(cv::norm(sample.image, striped_sample().image, cv::NORM_INF), 0);
  // The preset "none" changes nothing but the size.
  const Sample same = augment_sample(sample, {30, 40}, augment_preset(AugmentPreset::None), 3, {});
  EXPECT_EQ(cv::norm(same.image, resized.image, cv::NORM_INF), 0);
}

// torchvision.transforms.functional on the same image and factors (float images, so that only our final
// rounding to 8 bits differs).
TEST(AdjustColour, MatchesTorchvisionsColourFunctions) {
  if (!test::python_has("torchvision")) GTEST_SKIP() << "/usr/bin/python3 has no torchvision";
  std::mt19937 rng(5);
  cv::Mat image(6, 7, CV_8UC3);
  std::vector<int> values;
  for (int y = 0; y < image.rows; ++y)
    for (int x = 0; x < image.cols; ++x)
      for (int c = 0; c < 3; ++c) values.push_back(image.at<cv::Vec3b>(y, x)[c] = static_cast<uint8_t>(rng() % 256));
  struct Factors {
    double brightness, contrast, saturation, hue;
  };
  const std::vector<Factors> cases{{1.3, 1, 1, 0},  {1, 0.6, 1, 0},   {1, 1, 1.7, 0},
                                   {1, 1, 1, 0.23}, {1, 1, 1, -0.4}, {0.8, 1.25, 0.7, 0.05}};
  // One python process for all cases (starting torchvision takes seconds): a line of values per case.
  std::ostringstream script;
  script << "import torch; import torchvision.transforms.functional as F\n"
         << "image = torch.tensor(" << test::python_list(values)
         << ", dtype=torch.float32).reshape(6, 7, 3).permute(2, 0, 1) / 255\n"
         << "for b, c, s, h in [";
  for (const Factors& f : cases) script << "(" << f.brightness << ", " << f.contrast << ", " << f.saturation << ", " << f.hue << "), ";
  script << "]:\n"
         << "    x = F.adjust_brightness(image, b)\n"
         << "    x = F.adjust_contrast(x, c) if c != 1 else x\n"
         << "    x = F.adjust_saturation(x, s) if s != 1 else x\n"
         << "    x = F.adjust_hue(x, h) if h != 0 else x\n"
         << "    print(\" \".join(str(v) for v in (x.permute(1, 2, 0) * 255).flatten().tolist()))\n";
  const auto out = test::python_output(script.str());
  ASSERT_TRUE(out) << "python failed";
  std::istringstream reference(*out);
  for (const Factors& f : cases) {
    cv::Mat ours = image.clone();
    adjust_colour(ours, f.brightness, f.contrast, f.saturation, f.hue);
    double worst = 0;
    for (int y = 0; y < ours.rows; ++y)
      for (int x = 0; x < ours.cols; ++x)
        for (int c = 0; c < 3; ++c) {
          double expected = 0;
          reference >> expected;
          worst = std::max(worst, std::abs(ours.at<cv::Vec3b>(y, x)[c] - expected));
        }
    ASSERT_TRUE(reference) << "short output";
    // Our result is rounded to 8 bits: at most half a level, plus float rounding.
    EXPECT_LE(worst, 0.51) << "brightness " << f.brightness << " contrast " << f.contrast << " saturation "
                           << f.saturation << " hue " << f.hue;
  }
}

TEST(AugmentOptions, ImpossibleRangesAreErrorsNamingTheOption) {
  AugmentOptions o;
  o.min_scale = 0;
  EXPECT_TRUE(contains(error_of([&] { validate(o); }), "augment.min_scale")) << error_of([&] { validate(o); });
  o = {};
  o.min_scale = 2, o.max_scale = 1;
  EXPECT_TRUE(contains(error_of([&] { validate(o); }), "augment.max_scale 1 is below augment.min_scale 2"))
      << error_of([&] { validate(o); });
  o = {};
  o.saturation = 1.5;
  EXPECT_TRUE(contains(error_of([&] { validate(o); }), "augment.saturation must be in [0, 1]"));
  o = {};
  o.hue = 0.6;
  EXPECT_TRUE(contains(error_of([&] { validate(o); }), "augment.hue"));
}

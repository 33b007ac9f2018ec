// Test-time augmentation (flip, multi-scale) and sliding-window inference, against references run by
// hand through Segmenter::logits().
#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/segmenter.h>

#include "model_info.h"
#include "noise_image.h"

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace segnet;
namespace F = torch::nn::functional;

using segnet::test::noise_image;

namespace {

// Small, so that the tests are fast; a tile is 16 x 24.
ModelInfo small_info(Model model = Model::SegNetBasic, Task task = Task::Multiclass) {
  ModelInfo info = segnet::test::test_model_info(model, task == Task::Binary ? 2 : 4, {16, 24});
  info.task = task;
  return info;
}

SegNet warmed_model(const ModelInfo& info) {
  torch::manual_seed(7);
  SegNet model(info.options());
  model->train();
  model->forward(torch::randn({2, 3, 16, 24}) * 2 + 0.5);  // non-trivial batch-norm statistics
  model->eval();
  return model;
}

// Class probabilities of one forward pass of a normalised image x (3 x h x w): classes x h x w.
torch::Tensor probabilities_of(Segmenter& s, const torch::Tensor& x) {
  return class_probabilities(s.logits(x.unsqueeze(0)), s.info().binary())[0];
}

// p (classes x h x w) resized bilinearly to height x width, as probabilities are brought to the image.
torch::Tensor resized_to(const torch::Tensor& p, int64_t height, int64_t width) {
  return F::interpolate(p.unsqueeze(0), F::InterpolateFuncOptions()
                                            .size(std::vector<int64_t>{height, width})
                                            .mode(torch::kBilinear)
                                            .align_corners(false))[0];
}

// The sliding-window reference: x (3 x H x W, at least a tile) run as the 16 x 24 tiles at the given
// corners, each pixel the mean of the tiles that cover it.
torch::Tensor tiled(Segmenter& s, const torch::Tensor& x, const std::vector<int64_t>& ys, const std::vector<int64_t>& xs) {
  torch::Tensor sum, count = torch::zeros({1, x.size(1), x.size(2)});
  for (int64_t y : ys)
    for (int64_t x0 : xs) {
      const auto p = probabilities_of(s, x.slice(1, y, y + 16).slice(2, x0, x0 + 24));
      if (!sum.defined()) sum = torch::zeros({p.size(0), x.size(1), x.size(2)});
      sum.slice(1, y, y + 16).slice(2, x0, x0 + 24).add_(p);
      count.slice(1, y, y + 16).slice(2, x0, x0 + 24).add_(1);
    }
  EXPECT_GT(count.min().item<double>(), 0) << "the reference's tiles leave pixels uncovered";
  return sum / count;
}

// Batches and one-by-one runs may differ in the last bits (oneDNN), hence not bit-exact.
constexpr double kClose = 1e-5;
// Random models give nearly uniform probabilities, so real differences are small, but well above kClose.
constexpr double kDifferent = 1e-4;

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected) {
  ASSERT_EQ(actual.sizes(), expected.sizes());
  const double largest = (actual - expected).abs().max().item<double>();
  EXPECT_LT(largest, kClose) << "largest difference " << largest;
}

SegmenterOptions with(Tta tta, std::vector<double> scales, bool sliding_window, double overlap = 1.0 / 3) {
  SegmenterOptions o;
  o.tta = tta;
  o.tta_scales = std::move(scales);
  o.sliding_window = sliding_window;
  o.window_overlap = overlap;
  return o;
}

}  // namespace

TEST(Tta, FlipAveragesTheImageAndItsMirrorMirroredBack) {
  for (const Task task : {Task::Multiclass, Task::Binary}) {
    SCOPED_TRACE(to_string(task));
    const ModelInfo info = small_info(Model::SegNetBasic, task);
    const SegNet model = warmed_model(info);
    Segmenter plain(info, model, torch::kCPU), flip(info, model, torch::kCPU, with(Tta::Flip, {1}, false));
    const cv::Mat image = noise_image(16, 24, 1);
    const auto x = image_to_tensor(image, info.norm);
    const auto expected = (probabilities_of(plain, x) + probabilities_of(plain, x.flip({2})).flip({2})) / 2;
    expect_close(flip.probabilities(image), expected);
    EXPECT_GT((flip.probabilities(image) - plain.probabilities(image)).abs().max().item<double>(), kDifferent)
        << "the mirror changed nothing: was it run?";
  }
}

// A model's output on a mirror-symmetric image is not itself symmetric (its kernels are not), but the
// flip-averaged one is, if the mirror's probabilities are mirrored back.
TEST(Tta, FlipOfAMirrorSymmetricImageIsMirrorSymmetric) {
  const ModelInfo info = small_info();
  const SegNet model = warmed_model(info);
  Segmenter plain(info, model, torch::kCPU), flip(info, model, torch::kCPU, with(Tta::Flip, {1}, false));
  const cv::Mat left = noise_image(16, 12, 2);
  cv::Mat right, image;
  cv::flip(left, right, 1);
  cv::hconcat(left, right, image);
  const auto p = flip.probabilities(image);
  expect_close(p, p.flip({2}));
  const auto q = plain.probabilities(image);
  EXPECT_GT((q - q.flip({2})).abs().max().item<double>(), kDifferent) << "symmetric without the flip: the test shows nothing";
}

TEST(Tta, MultiScaleAveragesEachScalesProbabilitiesResizedToTheImage) {
  const ModelInfo info = small_info();
  const SegNet model = warmed_model(info);
  Segmenter plain(info, model, torch::kCPU), scales(info, model, torch::kCPU, with(Tta::None, {1, 2}, false));
  // At twice the training size, the largest scale's input is the image itself; scale 1 is shrunk from it.
  const cv::Mat image = noise_image(32, 48, 3);
  const auto x = image_to_tensor(image, info.norm);
  const auto x1 = F::interpolate(x.unsqueeze(0), F::InterpolateFuncOptions()
                                                     .size(std::vector<int64_t>{16, 24})
                                                     .mode(torch::kBilinear)
                                                     .align_corners(false)
                                                     .antialias(true))[0];
  expect_close(scales.probabilities(image), (probabilities_of(plain, x) + resized_to(probabilities_of(plain, x1), 32, 48)) / 2);
}

TEST(SlidingWindow, OnImagesOfTheTrainingShapeEqualsPlainInference) {
  const ModelInfo info = small_info();
  const SegNet model = warmed_model(info);
  Segmenter plain(info, model, torch::kCPU), window(info, model, torch::kCPU, with(Tta::None, {1}, true));
  for (const cv::Mat& image : {noise_image(16, 24, 4), noise_image(32, 48, 5), noise_image(8, 12, 6)}) {
    SCOPED_TRACE(std::to_string(image.rows) + "x" + std::to_string(image.cols));
    expect_close(window.probabilities(image), plain.probabilities(image));
  }
}

// Two training-size images side by side, without overlap, are two tiles: each half of the result is
// what plain inference gives for that half alone, where plain inference of the whole would squash it.
TEST(SlidingWindow, KeepsTheAspectRatioOfAWideImage) {
  const ModelInfo info = small_info();
  const SegNet model = warmed_model(info);
  Segmenter plain(info, model, torch::kCPU), window(info, model, torch::kCPU, with(Tta::None, {1}, true, 0.0));
  const cv::Mat a = noise_image(16, 24, 7), b = noise_image(16, 24, 8);
  cv::Mat image;
  cv::hconcat(a, b, image);
  const auto p = window.probabilities(image);
  expect_close(p, torch::cat({plain.probabilities(a), plain.probabilities(b)}, 2));
  EXPECT_GT((p - plain.probabilities(image)).abs().max().item<double>(), kDifferent);
}

// A 16 x 40 image is at the training scale already (its height is a tile's): with the default overlap
// (a third of 24 = 8) two tiles cover it, at x = 0 and x = 16, overlapping in columns 16..23.
TEST(SlidingWindow, EachPixelAveragesTheTilesThatCoverIt) {
  const ModelInfo info = small_info();
  const SegNet model = warmed_model(info);
  Segmenter plain(info, model, torch::kCPU), window(info, model, torch::kCPU, with(Tta::None, {1}, true));
  const cv::Mat image = noise_image(16, 40, 9);
  const auto x = image_to_tensor(image, info.norm);
  const auto a = probabilities_of(plain, x.slice(2, 0, 24)), b = probabilities_of(plain, x.slice(2, 16, 40));
  const auto expected = torch::cat({a.slice(2, 0, 16), (a.slice(2, 16, 24) + b.slice(2, 0, 8)) / 2, b.slice(2, 8, 24)}, 2);
  expect_close(window.probabilities(image), expected);
  expect_close(expected, tiled(plain, x, {0}, {0, 16}));  // and tiled(), the other tests' reference, agrees
}

// Scale 2 makes the 16 x 40 image 32 x 80, tiled in both directions; overlap 0.5 is a stride of 8 rows
// and 12 columns, the last tile of each flush with the edge. The 32 x 80 result is brought to 16 x 40.
// Its 18 tiles take three forward passes (8 tiles each at most).
TEST(SlidingWindow, TilesOverlapByTheOptionInBothDirections) {
  const ModelInfo info = small_info();
  const SegNet model = warmed_model(info);
  Segmenter plain(info, model, torch::kCPU), window(info, model, torch::kCPU, with(Tta::None, {2}, true, 0.5));
  const cv::Mat image = noise_image(16, 40, 10);
  const auto x = image_to_tensor(resize_image(image, {32, 80}), info.norm);
  const auto expected = resized_to(tiled(plain, x, {0, 8, 16}, {0, 12, 24, 36, 48, 56}), 16, 40);
  expect_close(window.probabilities(image), expected);
}

// Smaller than a tile after scaling (scale 0.5): the tile is padded with the normalised zero.
TEST(SlidingWindow, PadsViewsSmallerThanATileWithTheNormalisedZero) {
  const ModelInfo info = small_info();
  const SegNet model = warmed_model(info);
  Segmenter plain(info, model, torch::kCPU), window(info, model, torch::kCPU, with(Tta::None, {0.5}, true));
  const cv::Mat image = noise_image(16, 24, 11);
  const auto half = image_to_tensor(resize_image(image, {8, 12}), info.norm);
  const auto tile = probabilities_of(plain, torch::constant_pad_nd(half, {0, 12, 0, 8})).slice(1, 0, 8).slice(2, 0, 12);
  expect_close(window.probabilities(image), resized_to(tile, 16, 24));
}

// Everything at once on a Bayesian model, in batches of images of different sizes (and so of different
// sliding-window inputs): without dropout sampling the batch gives what one-by-one inference gives, and
// with it each image still gets probabilities at its own size.
TEST(Tta, ComposesWithMcDropoutAndBatchesOfDifferentSizes) {
  const ModelInfo info = small_info(Model::BayesianSegNetBasic);
  const SegNet model = warmed_model(info);
  const std::vector<cv::Mat> images = {noise_image(16, 24, 12), noise_image(20, 50, 13), noise_image(16, 24, 14), noise_image(40, 30, 15)};
  SegmenterOptions o = with(Tta::Flip, {0.75, 1, 1.25}, true);
  Segmenter deterministic(info, model, torch::kCPU, o);
  std::vector<torch::Tensor> inputs;
  std::vector<cv::Size> sizes;
  for (const auto& image : images) inputs.push_back(deterministic.input(image)), sizes.push_back(image.size());
  // The scaled images keep their aspect ratio: 20 x 50 covers a 16 x 24 tile at 0.8, then times 1.25.
  EXPECT_EQ(inputs[1].sizes().vec(), std::vector<int64_t>({3, 20, 50}));
  EXPECT_EQ(inputs[3].sizes().vec(), std::vector<int64_t>({3, 40, 30}));
  const auto batched = deterministic.probabilities(inputs, sizes);
  ASSERT_EQ(batched.size(), images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    SCOPED_TRACE(i);
    expect_close(batched[i], deterministic.probabilities(images[i]));
  }
  o.mc_samples = 3;
  Segmenter mc(info, model, torch::kCPU, o);
  const auto labels = mc.segment(images);
  ASSERT_EQ(labels.size(), images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(labels[i].size(), images[i].size());
    const auto p = mc.probabilities(images[i]);
    EXPECT_EQ(p.size(1), images[i].rows);
    EXPECT_EQ(p.size(2), images[i].cols);
    EXPECT_LT((p.sum(0) - 1).abs().max().item<double>(), 1e-5);
  }
}

TEST(Tta, RejectsBadScalesAndOverlapsNamingTheOption) {
  const ModelInfo info = small_info();
  const SegNet model = warmed_model(info);
  const auto rejects = [&](const SegmenterOptions& o, const std::string& option, const std::string& value) {
    try {
      Segmenter(info, model, torch::kCPU, o);
      ADD_FAILURE() << "accepted " << option << " " << value;
    } catch (const OptionError& e) {
      EXPECT_EQ(e.option(), option);
      EXPECT_NE(std::string(e.what()).find(value), std::string::npos) << e.what();
    }
  };
  rejects(with(Tta::None, {}, false), "tta_scales", "at least one");
  rejects(with(Tta::None, {1, 0}, false), "tta_scales", "not 0");
  rejects(with(Tta::None, {-0.5}, false), "tta_scales", "not -0.5");
  rejects(with(Tta::None, {4.5}, false), "tta_scales", "not 4.5");
  rejects(with(Tta::None, {1}, true, 1.0), "window_overlap", "not 1");
  rejects(with(Tta::None, {1}, true, -0.25), "window_overlap", "not -0.25");
  rejects(with(Tta::None, {1}, true, std::numeric_limits<double>::quiet_NaN()), "window_overlap", "not nan");
  EXPECT_NO_THROW(Segmenter(info, model, torch::kCPU, with(Tta::Flip, {0.5, 4}, true, 0.0)));
}

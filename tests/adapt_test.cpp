// Adapting batch norm's statistics to a new scene: the statistics against PyTorch's batch norm, a
// contrast change undone, the adapted checkpoint, and `segnet adapt`.
#include <segnet/adapt.h>
#include <segnet/checkpoint.h>
#include <segnet/error.h>
#include <segnet/quantize.h>
#include <segnet/segmenter.h>

#include "expect_error.h"
#include "image_files.h"
#include "model_info.h"
#include "run_cli.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <fstream>
#include <iterator>

using namespace segnet;
namespace fs = std::filesystem;
using segnet::test::contains;
using segnet::test::quote;
using segnet::test::segnet_cli;
using segnet::test::TempDir;
using segnet::test::unique_temp_dir;

namespace {

std::vector<torch::nn::BatchNorm2dImpl*> batch_norms(SegNet& model) {
  std::vector<torch::nn::BatchNorm2dImpl*> layers;
  for (const auto& module : model->modules(/*include_self=*/false))
    if (auto* bn = module->as<torch::nn::BatchNorm2dImpl>()) layers.push_back(bn);
  return layers;
}

torch::nn::Conv2dImpl* first_convolution(SegNet& model) {
  for (const auto& module : model->modules(/*include_self=*/false))
    if (auto* conv = module->as<torch::nn::Conv2dImpl>()) return conv;
  return nullptr;
}

// Feeds `batches` to adapt_batch_norm one after another.
std::function<torch::Tensor()> batches_of(std::vector<torch::Tensor> batches) {
  auto next = std::make_shared<size_t>(0);
  return [batches = std::move(batches), next]() -> torch::Tensor {
    return *next < batches.size() ? batches[(*next)++] : torch::Tensor();
  };
}

// A model with random weights (the same for the same seed) whose running statistics are those of a few
// batches unlike the scenes the tests adapt it to, as a trained model's are.
SegNet model_with_statistics(const SegNetOptions& options, uint64_t seed) {
  torch::manual_seed(seed);
  SegNet m(options);
  m->train();
  torch::NoGradGuard no_grad;
  for (int i = 0; i < 3; ++i) m->forward(torch::randn({2, 3, 32, 32}) * 1.5 + 0.3);
  m->eval();
  return m;
}

}  // namespace

TEST(AdaptBatchNorm, StatisticsAreThoseOfTheImagesEachBatchWeightedByItsImages) {
  torch::manual_seed(4);
  SegNet model(SegNetOptions(Model::SegNetBasic, 3));
  const torch::Tensor a = torch::randn({3, 3, 16, 16}) * 2 + 0.5, b = torch::randn({2, 3, 16, 16}) - 1;
  const AdaptedStatistics seen = adapt_batch_norm(model, batches_of({a, b}));
  EXPECT_EQ(seen.images, 5);
  EXPECT_EQ(seen.layers, static_cast<int64_t>(batch_norms(model).size()));

  // The first batch-norm layer reads the first convolution's output, which no statistic changes: its
  // mean is that of all five images, its variance the image-weighted mean of the batches' unbiased ones.
  torch::NoGradGuard no_grad;
  auto* conv = first_convolution(model);
  ASSERT_NE(conv, nullptr);
  const auto ya = conv->forward(a), yb = conv->forward(b);
  const auto mean = torch::cat({ya, yb}).mean({0, 2, 3});
  const auto var = (3 * ya.var({0, 2, 3}, /*unbiased=*/true) + 2 * yb.var({0, 2, 3}, /*unbiased=*/true)) / 5;
  auto* bn = batch_norms(model).front();
  EXPECT_TRUE(torch::allclose(bn->running_mean, mean, 1e-4, 1e-5)) << bn->running_mean - mean;
  EXPECT_TRUE(torch::allclose(bn->running_var, var, 1e-4, 1e-5)) << bn->running_var - var;

  // One batch: PyTorch's batch norm in training mode with momentum 1 keeps exactly that batch's statistics.
  SegNet one(SegNetOptions(Model::SegNetBasic, 3));
  SegNet reference(SegNetOptions(Model::SegNetBasic, 3));
  auto into = reference->parameters();
  for (size_t i = 0; i < into.size(); ++i) into[i].copy_(one->parameters()[i]);
  adapt_batch_norm(one, batches_of({a}));
  for (auto* layer : batch_norms(reference)) layer->options.momentum(1.0);
  reference->train();
  reference->forward(a);
  const auto adapted = batch_norms(one), expected = batch_norms(reference);
  ASSERT_EQ(adapted.size(), expected.size());
  for (size_t i = 0; i < adapted.size(); ++i) {
    EXPECT_TRUE(torch::allclose(adapted[i]->running_mean, expected[i]->running_mean, 1e-5, 1e-6)) << "layer " << i;
    EXPECT_TRUE(torch::allclose(adapted[i]->running_var, expected[i]->running_var, 1e-5, 1e-6)) << "layer " << i;
    EXPECT_EQ(adapted[i]->options.momentum(), c10::optional<double>(0.1));  // as it was
  }
  EXPECT_FALSE(one->is_training());
  for (auto* layer : adapted) EXPECT_FALSE(layer->is_training());
}

TEST(AdaptBatchNorm, DropoutStaysOffSoTheStatisticsAreDeterministic) {
  torch::manual_seed(2);
  SegNet first(SegNetOptions(Model::BayesianSegNetBasic, 4));
  SegNet second(SegNetOptions(Model::BayesianSegNetBasic, 4));
  torch::NoGradGuard no_grad;
  auto into = second->parameters();
  for (size_t i = 0; i < into.size(); ++i) into[i].copy_(first->parameters()[i]);
  const torch::Tensor images = torch::randn({2, 3, 32, 32});
  torch::manual_seed(10);
  adapt_batch_norm(first, batches_of({images}));
  torch::manual_seed(11);  // dropout, were it on, would draw other masks
  adapt_batch_norm(second, batches_of({images}));
  const auto a = batch_norms(first), b = batch_norms(second);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i]->running_mean, b[i]->running_mean)) << "layer " << i;
    EXPECT_TRUE(torch::equal(a[i]->running_var, b[i]->running_var)) << "layer " << i;
  }
}

// A scene with less contrast, x -> a x around the normalisation's mean, reaches the first batch norm as
// a y + (1 - a) bias per channel (zero padding included), which its statistics undo: the model adapted to
// the dim scene computes on it what the model adapted to the original computes on the original.
TEST(AdaptBatchNorm, AContrastChangeOfTheSceneIsUndone) {
  const SegNetOptions options(Model::SegNetBasic, 5);
  SegNet original = model_with_statistics(options, 8), adapted = model_with_statistics(options, 8),
         trained = model_with_statistics(options, 8);
  torch::manual_seed(9);
  const torch::Tensor scene = torch::randn({4, 3, 32, 32}), dim = 0.35 * scene;
  adapt_batch_norm(original, batches_of({scene}));
  adapt_batch_norm(adapted, batches_of({dim}));
  torch::NoGradGuard no_grad;
  const auto want = original->forward(scene), got = adapted->forward(dim), unadapted = trained->forward(dim);
  const double scale = want.abs().max().item<double>();
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-3 * scale);
  EXPECT_GT((unadapted - want).abs().max().item<double>(), 0.1 * scale);  // what adapting wins back
}

TEST(AdaptBatchNorm, TheTrainedWeightMixesTheTrainedStatisticsWithTheScenes) {
  const SegNetOptions options(Model::SegNetBasic, 3);
  SegNet trained = model_with_statistics(options, 3), scene = model_with_statistics(options, 3),
         mixed = model_with_statistics(options, 3), kept = model_with_statistics(options, 3);
  torch::manual_seed(5);
  const torch::Tensor images = torch::randn({3, 3, 32, 32}) * 0.5 - 0.4;
  adapt_batch_norm(scene, batches_of({images}));
  adapt_batch_norm(mixed, batches_of({images}), 0.25);
  adapt_batch_norm(kept, batches_of({images}), 1);
  const auto t = batch_norms(trained), s = batch_norms(scene), m = batch_norms(mixed), k = batch_norms(kept);
  for (size_t i = 0; i < t.size(); ++i) {
    EXPECT_GT((s[i]->running_var - t[i]->running_var).abs().max().item<double>(), 1e-2) << "layer " << i;
    EXPECT_TRUE(torch::allclose(m[i]->running_mean, 0.25 * t[i]->running_mean + 0.75 * s[i]->running_mean, 1e-5, 1e-6))
        << "layer " << i;
    EXPECT_TRUE(torch::allclose(m[i]->running_var, 0.25 * t[i]->running_var + 0.75 * s[i]->running_var, 1e-5, 1e-6))
        << "layer " << i;
    EXPECT_TRUE(torch::equal(k[i]->running_mean, t[i]->running_mean)) << "layer " << i;
    EXPECT_TRUE(torch::equal(k[i]->running_var, t[i]->running_var)) << "layer " << i;
  }
  for (const double weight : {-0.1, 1.5, std::nan("")}) {
    try {
      adapt_batch_norm(kept, batches_of({images}), weight);
      ADD_FAILURE() << "trained weight " << weight << ": expected an OptionError";
    } catch (const OptionError& e) {
      EXPECT_EQ(e.option(), "trained_weight");
    }
  }
  for (size_t i = 0; i < t.size(); ++i) EXPECT_TRUE(torch::equal(k[i]->running_var, t[i]->running_var)) << "layer " << i;
}

TEST(AdaptBatchNorm, NoImagesOrAFailedBatchLeaveTheModelAsItWas) {
  torch::manual_seed(6);
  SegNet model(SegNetOptions(Model::SegNetBasic, 3));
  adapt_batch_norm(model, batches_of({torch::randn({2, 3, 16, 16})}));
  std::vector<torch::Tensor> means, vars;
  for (auto* bn : batch_norms(model)) {
    means.push_back(bn->running_mean.clone());
    vars.push_back(bn->running_var.clone());
  }
  const auto unchanged = [&] {
    const auto layers = batch_norms(model);
    for (size_t i = 0; i < layers.size(); ++i) {
      EXPECT_TRUE(torch::equal(layers[i]->running_mean, means[i])) << "layer " << i;
      EXPECT_TRUE(torch::equal(layers[i]->running_var, vars[i])) << "layer " << i;
      EXPECT_EQ(layers[i]->options.momentum(), c10::optional<double>(0.1));
      EXPECT_FALSE(layers[i]->is_training());
    }
  };
  try {
    adapt_batch_norm(model, batches_of({}));
    ADD_FAILURE() << "no images: expected an OptionError";
  } catch (const OptionError& e) {
    EXPECT_EQ(e.option(), "images");
  }
  unchanged();
  int calls = 0;
  EXPECT_THROW(adapt_batch_norm(model,
                                [&]() -> torch::Tensor {
                                  if (++calls == 2) throw Error("second.png: not an image");
                                  return torch::randn({2, 3, 16, 16}) * 5;
                                }),
               Error);
  unchanged();
}

// A segnet-basic checkpoint (its weights as initialised: adapting needs no trained ones), and the val
// images of a synthetic dataset made darker and flatter.
class AdaptedModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = unique_temp_dir("AdaptedModel");
    fs::create_directories(root_ / "run");
    synthesize_dataset({root_ / "data", 40, {48, 64}, 7});
    const ModelInfo info = test::test_model_info(Model::SegNetBasic, 5, {48, 64});
    torch::manual_seed(7);
    SegNet model(info.options());
    save_checkpoint(root_ / "run" / "last.pt", info, model, nullptr, {});
    for (const auto& sample : find_samples(root_ / "data", "val.txt")) {
      cv::Mat dark;
      read_image(sample.image, std::nullopt).convertTo(dark, -1, 0.4, 10);  // 8-bit: 0.4 x + 10
      dark_.push_back(dark);
      dark_files_.push_back(root_ / "dark" / sample.image.filename());
      cv::Mat bgr;
      cv::cvtColor(dark, bgr, cv::COLOR_RGB2BGR);
      test::write_image(dark_files_.back(), bgr);
    }
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static fs::path root_;
  static std::vector<cv::Mat> dark_;
  static std::vector<fs::path> dark_files_;
};
fs::path AdaptedModel::root_;
std::vector<cv::Mat> AdaptedModel::dark_;
std::vector<fs::path> AdaptedModel::dark_files_;

TEST_F(AdaptedModel, TheAdaptedCheckpointHasTheStatisticsOfTheSceneAsInferenceSeesIt) {
  // Calibrated for int8 first: the adapted copy must not keep ranges measured with the old statistics.
  CheckpointCalibration c;
  c.checkpoint = root_ / "run" / "last.pt";
  c.data = root_ / "data";
  c.images = 4;
  const fs::path calibrated = calibrate_checkpoint(c).out;
  CheckpointAdaptation a;
  a.checkpoint = calibrated;
  a.images = dark_files_;
  a.batch = 3;
  std::vector<int64_t> done;
  const AdaptationReport r = adapt_checkpoint(a, [&](int64_t d, int64_t total) {
    EXPECT_EQ(total, static_cast<int64_t>(dark_files_.size()));
    done.push_back(d);
  });
  EXPECT_EQ(r.out, root_ / "run" / "last_int8_adapted.pt");
  EXPECT_EQ(r.statistics.images, static_cast<int64_t>(dark_files_.size()));
  EXPECT_EQ(r.statistics.layers, 8);  // segnet-basic: 4 encoder and 4 decoder convolutions, each with batch norm
  ASSERT_GE(done.size(), 2u);
  EXPECT_EQ(done[0], 0);  // once the inputs are open
  EXPECT_EQ(done[1], 3);  // after the first batch
  EXPECT_EQ(done.back(), r.statistics.images);

  // The same statistics as adapting in memory to the images as the Segmenter prepares them.
  Checkpoint from = load_checkpoint(calibrated), to = load_checkpoint(r.out);
  Segmenter segmenter = Segmenter::from_checkpoint(calibrated, torch::kCPU);
  std::vector<torch::Tensor> batches;
  for (size_t i = 0; i < dark_.size(); i += 3) {
    std::vector<torch::Tensor> batch;
    for (size_t j = i; j < std::min(i + 3, dark_.size()); ++j) batch.push_back(segmenter.input(dark_[j]));
    batches.push_back(torch::stack(batch));
  }
  SegNet expected = load_checkpoint(calibrated).model;
  adapt_batch_norm(expected, batches_of(batches), a.trained_weight);
  const auto got = batch_norms(to.model), want = batch_norms(expected), old = batch_norms(from.model);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(torch::allclose(got[i]->running_mean, want[i]->running_mean, 1e-5, 1e-6)) << "layer " << i;
    EXPECT_TRUE(torch::allclose(got[i]->running_var, want[i]->running_var, 1e-5, 1e-6)) << "layer " << i;
    EXPECT_FALSE(torch::allclose(got[i]->running_mean, old[i]->running_mean, 1e-3, 1e-3)) << "layer " << i;
  }
  // Only the statistics changed; what was only for training or int8 is gone.
  const auto p = from.model->named_parameters(), q = to.model->named_parameters();
  for (const auto& item : p) EXPECT_TRUE(torch::equal(item.value(), q[item.key()])) << item.key();
  EXPECT_FALSE(from.info.activation_ranges.empty());
  EXPECT_TRUE(to.info.activation_ranges.empty());
  EXPECT_FALSE(to.state.optimizer.has_value());
  EXPECT_EQ(to.info.classes.size(), from.info.classes.size());
}

// A video is its frames: every frame_step-th of the first max_frames, as if they were image files.
TEST_F(AdaptedModel, EveryKthFrameOfAVideoCountsAsAnImageFile) {
  TempDir dir;
  for (size_t i = 0; i < dark_.size(); ++i) {  // a lossless video: an image sequence
    char name[16];
    std::snprintf(name, sizeof name, "%03zu.png", i);
    cv::Mat bgr;
    cv::cvtColor(dark_[i], bgr, cv::COLOR_RGB2BGR);
    test::write_image(dir.path / "seq" / name, bgr);
  }
  ASSERT_GE(dark_.size(), 5u);
  CheckpointAdaptation from_video, from_files;
  from_video.checkpoint = from_files.checkpoint = root_ / "run" / "last.pt";
  from_video.batch = from_files.batch = 2;
  from_video.videos = {{(dir.path / "seq" / "%03d.png").string(), std::nullopt, 5}};
  from_video.frame_step = 2;
  from_video.out = dir.path / "video.pt";
  from_files.images = {dark_files_[0], dark_files_[2], dark_files_[4]};
  from_files.out = dir.path / "files.pt";
  std::vector<std::pair<int64_t, int64_t>> progress;  // (done, total): at the start, then after each batch
  const AdaptationReport report =
      adapt_checkpoint(from_video, [&](int64_t done, int64_t total) { progress.emplace_back(done, total); });
  EXPECT_EQ(report.statistics.images, 3);
  EXPECT_EQ(report.announced, 3);
  EXPECT_EQ(progress, (std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {2, 3}, {3, 3}}));  // 5 frames, every 2nd: 3
  EXPECT_EQ(adapt_checkpoint(from_files).statistics.images, 3);
  Checkpoint a = load_checkpoint(from_video.out), b = load_checkpoint(from_files.out);
  const auto got = batch_norms(a.model), want = batch_norms(b.model);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(torch::equal(got[i]->running_mean, want[i]->running_mean)) << "layer " << i;
    EXPECT_TRUE(torch::equal(got[i]->running_var, want[i]->running_var)) << "layer " << i;
  }

  // The program takes video files among its inputs; --frames and --frame-step choose their frames.
  cv::VideoWriter writer((dir.path / "scene.avi").string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10,
                         dark_[0].size());
  ASSERT_TRUE(writer.isOpened());
  for (const auto& rgb : dark_) {
    cv::Mat bgr;
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    writer.write(bgr);
  }
  writer.release();
  const auto r = segnet_cli("adapt --checkpoint " + quote(root_ / "run" / "last.pt") + " --out " + quote(dir.path / "avi.pt") +
                                " --frames 6 --frame-step 3 " + quote(dir.path / "scene.avi") + " " + quote(dark_files_[0]),
                            dir.path);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "on 3 images; wrote")) << r.out;  // the image, and the 1st and 4th of 6 frames
  EXPECT_FALSE(contains(r.err, "warning")) << r.err;
  // A copy cut short gives the frames it holds, and a warning that it announced more.
  {
    std::ifstream in(dir.path / "scene.avi", std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(dir.path / "cut.avi", std::ios::binary) << bytes.substr(0, bytes.size() * 6 / 10);
  }
  const auto cut = segnet_cli("adapt --checkpoint " + quote(root_ / "run" / "last.pt") + " --out " + quote(dir.path / "cut.pt") +
                                  " " + quote(dir.path / "cut.avi"),
                              dir.path);
  EXPECT_EQ(cut.status, 0) << cut.err;
  EXPECT_TRUE(contains(cut.err, "where the inputs announce " + std::to_string(dark_.size()) + ": a video ended early"))
      << cut.err;

  // A camera needs a frame count (it would run on forever); a missing video is named; nothing is written.
  CheckpointAdaptation camera = from_video;
  camera.videos = {{"", 0, 0}};
  camera.out = dir.path / "camera.pt";
  try {
    adapt_checkpoint(camera);
    ADD_FAILURE() << "a camera without max_frames: expected an OptionError";
  } catch (const OptionError& e) {
    EXPECT_EQ(e.option(), "max_frames");
  }
  EXPECT_TRUE(test::FailsWithOneLineNaming(
      segnet_cli("adapt --checkpoint " + quote(root_ / "run" / "last.pt") + " --out " + quote(camera.out) + " " +
                     quote(dir.path / "missing.mp4"),
                 dir.path),
      "missing.mp4"));
  EXPECT_FALSE(fs::exists(camera.out));
}

TEST_F(AdaptedModel, AdaptRefusesWhatItCannotUseAndWritesNothing) {
  TempDir dir;
  const fs::path ck = root_ / "run" / "last.pt";
  const auto out = dir.path / "out.pt";
  const auto adapt = [&](const std::string& args) { return segnet_cli("adapt " + args, dir.path); };
  const std::string dark = " " + quote(root_ / "dark");
  // The checkpoint itself as the output: refused, and the checkpoint left as it was.
  const auto size = fs::file_size(ck);
  EXPECT_TRUE(test::FailsWithOneLineNaming(adapt("--checkpoint " + quote(ck) + " --out " + quote(ck) + dark), "--out"));
  EXPECT_EQ(fs::file_size(ck), size);
  // An image that cannot be read: named, nothing written.
  std::ofstream(dir.path / "broken.png") << "not a png";
  EXPECT_TRUE(test::FailsWithOneLineNaming(
      adapt("--checkpoint " + quote(ck) + " --out " + quote(out) + " " + quote(dark_files_[0]) + " " + quote(dir.path / "broken.png")),
      "broken.png"));
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(test::FailsWithOneLineNaming(adapt("--checkpoint " + quote(ck) + " --batch 0 --out " + quote(out) + dark), "--batch"));
  EXPECT_TRUE(test::FailsWithOneLineNaming(
      adapt("--checkpoint " + quote(ck) + " --trained-weight 1.5 --out " + quote(out) + dark), "--trained-weight"));
  EXPECT_TRUE(test::FailsWithOneLineNaming(adapt("--checkpoint " + quote(dir.path / "missing.pt") + " --out " + quote(out) + dark),
                                           "missing.pt"));
  // A camera without a frame count would run on forever; no inputs at all; a negative count.
  EXPECT_TRUE(test::FailsWithOneLineNaming(adapt("--checkpoint " + quote(ck) + " --camera 0 --out " + quote(out)), "--frames"));
  EXPECT_TRUE(test::FailsWithOneLineNaming(adapt("--checkpoint " + quote(ck) + " --out " + quote(out)), "--camera"));
  EXPECT_TRUE(test::FailsWithOneLineNaming(adapt("--checkpoint " + quote(ck) + " --frames -1 --out " + quote(out) + dark), "--frames"));
  EXPECT_TRUE(test::FailsWithOneLineNaming(adapt("--checkpoint " + quote(ck) + " --frame-step 2 --out " + quote(out) + dark),
                                           "--frame-step"));
  EXPECT_FALSE(fs::exists(out));

  const auto r = adapt("--checkpoint " + quote(ck) + " --out " + quote(out) + dark);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "on " + std::to_string(dark_files_.size()) + " images; wrote")) << r.out;
  EXPECT_TRUE(fs::exists(out));
}

#include <segnet/checkpoint.h>
#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/segmenter.h>

#include "model_info.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <random>
#include <unistd.h>

using namespace segnet;
namespace fs = std::filesystem;
using segnet::test::slurp;
using segnet::test::TempDir;

namespace {

ModelInfo make_info(Model model, int64_t classes) { return segnet::test::test_model_info(model, classes, {24, 32}); }

cv::Mat random_image(int rows, int cols) {
  cv::Mat m(rows, cols, CV_8UC3);
  cv::randu(m, 0, 255);
  return m;
}

}  // namespace

TEST(Checkpoint, RoundTripGivesBitIdenticalPredictions) {
  TempDir dir;
  const auto info = make_info(Model::SegNetBasic, 4);
  torch::manual_seed(1);
  SegNet model(info.options());
  // Non-trivial batch-norm statistics, so that buffers are checked too.
  model->train();
  model->forward(torch::randn({2, 3, 24, 32}) * 3 + 1);
  model->eval();
  TrainState state;
  state.epoch = 7;
  state.best_miou = 0.5;
  save_checkpoint(dir.path / "m.pt", info, model, nullptr, state);

  const Checkpoint ck = load_checkpoint(dir.path / "m.pt");
  EXPECT_EQ(ck.info.model, Model::SegNetBasic);
  EXPECT_EQ(ck.info.classes.size(), 4u);
  EXPECT_EQ(ck.info.classes[2].name, info.classes[2].name);
  EXPECT_EQ(ck.info.classes[2].rgb, info.classes[2].rgb);
  EXPECT_EQ(ck.info.norm.mean, info.norm.mean);
  EXPECT_EQ(ck.info.norm.std, info.norm.std);
  EXPECT_EQ(ck.info.class_weights, info.class_weights);
  EXPECT_EQ(ck.state.epoch, 7);

  Segmenter original(info, model, torch::kCPU), loaded(ck.info, ck.model, torch::kCPU);
  const cv::Mat image = random_image(29, 41);
  EXPECT_TRUE(torch::equal(original.probabilities(image), loaded.probabilities(image)));
}

// A run without validation has no best mIoU: NaN, which JSON stores as null.
TEST(Checkpoint, RunWithoutValidationLoads) {
  TempDir dir;
  const auto info = make_info(Model::SegNetBasic, 3);
  SegNet model(info.options());
  TrainState state;
  state.best_miou = std::nan("");
  save_checkpoint(dir.path / "m.pt", info, model, nullptr, state);
  EXPECT_TRUE(std::isnan(load_checkpoint(dir.path / "m.pt").state.best_miou));
}

// Metadata no training writes (edited by hand, or by another tool): an impossible size would meet
// inference as an allocation failure, a zero std as NaN; both are errors naming the file on loading.
TEST(Checkpoint, ImpossibleSizeOrNormalisationIsAnErrorNamingTheFile) {
  TempDir dir;
  const auto good = make_info(Model::SegNetBasic, 3);
  SegNet model(good.options());
  auto bad_size = good, bad_std = good;
  bad_size.size = {0, 32};
  bad_std.norm.std[1] = 0;
  for (const auto& [info, problem] : {std::pair{bad_size, "training size 0x32"}, std::pair{bad_std, "std"}}) {
    save_checkpoint(dir.path / "m.pt", info, model, nullptr, {});
    try {
      load_checkpoint(dir.path / "m.pt");
      ADD_FAILURE() << problem << " loaded";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("m.pt"), std::string::npos) << error.what();
      EXPECT_NE(std::string(error.what()).find(problem), std::string::npos) << error.what();
    }
  }
}

TEST(Checkpoint, TruncatedFileIsAnErrorNamingIt) {
  TempDir dir;
  const auto info = make_info(Model::SegNetBasic, 3);
  SegNet model(info.options());
  save_checkpoint(dir.path / "m.pt", info, model, nullptr, {});
  fs::resize_file(dir.path / "m.pt", fs::file_size(dir.path / "m.pt") / 2);
  try {
    load_checkpoint(dir.path / "m.pt");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.pt"), std::string::npos) << e.what();
  }
}

// Flipped bytes anywhere in the file: every damaged copy is refused with an error naming it, none
// loads silently (before checksums, 18 of 60 such copies loaded without a word).
TEST(Checkpoint, EveryCopyWithFlippedBytesIsRejectedNamingTheFile) {
  TempDir dir;
  const auto info = make_info(Model::SegNetBasic, 3);
  SegNet model(info.options());
  save_checkpoint(dir.path / "m.pt", info, model, nullptr, {});
  const std::string original = slurp(dir.path / "m.pt");
  std::mt19937_64 rng(5);
  for (int copy = 0; copy < 60; ++copy) {
    std::string damaged = original;
    const int flips = 1 + copy % 4;
    for (int f = 0; f < flips; ++f) damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
    const fs::path file = dir.path / ("damaged" + std::to_string(copy) + ".pt");
    std::ofstream(file, std::ios::binary) << damaged;
    try {
      load_checkpoint(file);
      ADD_FAILURE() << "damaged copy " << copy << " loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(file.filename().string()), std::string::npos) << e.what();
    }
  }
}

TEST(Checkpoint, WeightsOfAnotherModelAreRejected) {
  TempDir dir;
  // Metadata says 3 classes; the stored classifier has 5.
  SegNet five(make_info(Model::SegNetBasic, 5).options());
  save_checkpoint(dir.path / "m.pt", make_info(Model::SegNetBasic, 3), five, nullptr, {});
  EXPECT_THROW(load_checkpoint(dir.path / "m.pt"), Error);
}

TEST(Checkpoint, FileThatIsNotACheckpointIsRejected) {
  TempDir dir;
  std::ofstream(dir.path / "x.pt") << "not a checkpoint";
  EXPECT_THROW(load_checkpoint(dir.path / "x.pt"), Error);
  torch::save(torch::ones({2}), (dir.path / "tensor.pt").string());  // a LibTorch file, but not ours
  EXPECT_THROW(load_checkpoint(dir.path / "tensor.pt"), Error);
  EXPECT_THROW(load_checkpoint(dir.path / "missing.pt"), Error);
}

TEST(Checkpoint, FailedSaveLeavesExistingFileIntact) {
  TempDir dir;
  const auto info = make_info(Model::SegNetBasic, 3);
  SegNet model(info.options());
  save_checkpoint(dir.path / "m.pt", info, model, nullptr, {});
  const auto before = fs::file_size(dir.path / "m.pt");
  // A directory where the temporary file would go makes the write fail.
  fs::create_directories(temporary_path_for(dir.path / "m.pt"));
  EXPECT_ANY_THROW(save_checkpoint(dir.path / "m.pt", info, model, nullptr, {}));
  EXPECT_EQ(fs::file_size(dir.path / "m.pt"), before);
  EXPECT_NO_THROW(load_checkpoint(dir.path / "m.pt"));
}

TEST(Segmenter, McDropoutSamplesDifferWhilePlainInferenceIsDeterministic) {
  auto info = make_info(Model::BayesianSegNetBasic, 3);
  torch::manual_seed(2);
  SegNet model(info.options());
  const cv::Mat image = random_image(24, 32);
  Segmenter plain(info, model, torch::kCPU), mc(info, model, torch::kCPU, {Precision::Float32, /*mc_samples=*/2});
  EXPECT_TRUE(torch::equal(plain.probabilities(image), plain.probabilities(image)));
  const auto a = mc.probabilities(image), b = mc.probabilities(image);
  EXPECT_FALSE(torch::equal(a, b));
  EXPECT_TRUE(torch::allclose(a.sum(0), torch::ones({24, 32}), 1e-5, 1e-5));  // still probabilities
  // A model without dropout has nothing to sample.
  auto plain_info = make_info(Model::SegNetBasic, 3);
  SegNet no_dropout(plain_info.options());
  EXPECT_THROW(Segmenter(plain_info, no_dropout, torch::kCPU, {Precision::Float32, 2}), Error);
}

TEST(Segmenter, Bf16AgreesWithFp32OnMostPixels) {
  const auto info = make_info(Model::SegNetBasic, 4);
  torch::manual_seed(3);
  SegNet model(info.options());
  const cv::Mat image = random_image(48, 64);
  Segmenter fp32(info, model, torch::kCPU), bf16(info, model, torch::kCPU, {Precision::BFloat16});
  const auto p32 = fp32.probabilities(image), p16 = bf16.probabilities(image);
  EXPECT_LT((p32 - p16).abs().max().item<double>(), 0.05);
}

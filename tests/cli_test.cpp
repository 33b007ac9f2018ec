// Runs the real `segnet` binary: exit statuses, files written and the one-line errors on stderr.
#include <segnet/data.h>
#include <segnet/files.h>
#include <segnet/metrics.h>
#include <segnet/model.h>
#include <segnet/quantize.h>
#include <segnet/runtime.h>

#include "expect_error.h"
#include "temp_dir.h"
#include "run_cli.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

using namespace segnet;
namespace fs = std::filesystem;
using segnet::test::contains;
using segnet::test::TempDir;
using segnet::test::quote;
using segnet::test::segnet_cli;
using segnet::test::slurp;
using segnet::test::unique_temp_dir;

namespace {

// Field `k` (from 0) of a CSV line without quoted fields.
std::string csv_field(const std::string& line, int k) {
  std::istringstream in(line);
  std::string field;
  for (int i = 0; i <= k; ++i) std::getline(in, field, ',');
  return field;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

using Result = segnet::test::CliResult;

// A failed run whose stderr is one line "segnet: error: ..." naming `subject`. With
// `after_progress`, progress lines may come before it (train reports before it checks images).
::testing::AssertionResult FailsWithErrorNaming(const Result& r, const std::string& subject,
                                                bool after_progress = false) {
  if (r.status == 0) return ::testing::AssertionFailure() << "exit status 0; stderr:\n" << r.err;
  const auto lines = lines_of(r.err);
  if (lines.empty()) return ::testing::AssertionFailure() << "nothing on stderr";
  if (!after_progress && lines.size() != 1)
    return ::testing::AssertionFailure() << "expected one line on stderr, got " << lines.size() << ":\n" << r.err;
  for (size_t i = 0; i + 1 < lines.size(); ++i)
    if (contains(lines[i], "error"))
      return ::testing::AssertionFailure() << "more than one error line on stderr:\n" << r.err;
  const std::string& line = lines.back();
  if (line.rfind("segnet: error: ", 0) != 0)
    return ::testing::AssertionFailure() << "last stderr line does not start with 'segnet: error: ':\n" << r.err;
  if (!contains(line, subject))
    return ::testing::AssertionFailure() << "error does not name '" << subject << "':\n" << r.err;
  return ::testing::AssertionSuccess();
}

}  // namespace

// One synthetic dataset and one short training run, shared by the tests that need a trained model.
class CliRun : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = unique_temp_dir("CliRun");
    fs::create_directories(root_);
    data_ = root_ / "data";
    run_ = root_ / "run";
    const Result synth = segnet_cli("synth --out " + quote(data_) + " --count 6 --size 24x32", root_);
    if (synth.status != 0) {
      setup_failure_ = "synth failed:\n" + synth.err;
      return;
    }
    train_ = segnet_cli("train --data " + quote(data_) + " --model segnet-basic --size 24x32 --epochs 1 --batch 2 --out " +
                            quote(run_),
                        root_);
    if (train_.status != 0) setup_failure_ = "train failed:\n" + train_.err;
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  void SetUp() override { ASSERT_EQ(setup_failure_, ""); }

  static fs::path root_, data_, run_;
  static Result train_;
  static std::string setup_failure_;
  TempDir dir_;
};

fs::path CliRun::root_, CliRun::data_, CliRun::run_;
Result CliRun::train_;
std::string CliRun::setup_failure_;

TEST_F(CliRun, TrainWritesMetricsRowAndCheckpoints) {
  EXPECT_TRUE(contains(train_.out, "epoch 1")) << train_.out;
  const auto rows = lines_of(slurp(run_ / "metrics.csv"));
  ASSERT_EQ(rows.size(), 2u) << slurp(run_ / "metrics.csv");
  EXPECT_EQ(rows[0].rfind("epoch,train_loss,", 0), 0u) << rows[0];
  EXPECT_EQ(rows[1].rfind("1,", 0), 0u) << rows[1];
  EXPECT_EQ(std::count(rows[1].begin(), rows[1].end(), ','), std::count(rows[0].begin(), rows[0].end(), ','));
  EXPECT_GT(fs::file_size(run_ / "last.pt"), 0u);
  EXPECT_GT(fs::file_size(run_ / "best.pt"), 0u);
}

TEST_F(CliRun, EvalWritesJsonWithMetricsPerClassAndConfusion) {
  const fs::path json_file = dir_.path / "metrics.json";
  const Result r = segnet_cli("eval --checkpoint " + quote(run_ / "best.pt") + " --data " + quote(data_) +
                                  " --list val.txt --json " + quote(json_file),
                              dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "mIoU")) << r.out;
  std::ifstream in(json_file);
  ASSERT_TRUE(in) << json_file;
  const nlohmann::json j = nlohmann::json::parse(in);

  for (const char* key : {"global_acc", "class_avg_acc", "miou"}) {
    ASSERT_TRUE(j.contains(key)) << key;
    ASSERT_TRUE(j[key].is_number()) << key << " = " << j[key];
    EXPECT_GE(j[key].get<double>(), 0.0) << key;
    EXPECT_LE(j[key].get<double>(), 1.0) << key;
  }
  // The printed figures are the JSON's rounded to four decimals (not cut after four), as train prints them.
  char miou[32];
  std::snprintf(miou, sizeof miou, "%.4f", j["miou"].get<double>());
  EXPECT_TRUE(contains(r.out, "\nmIoU" + std::string(13, ' ') + miou + "\n")) << r.out;
  const auto classes = read_classes_csv(data_ / "classes.csv");
  const size_t k = classes.size();
  ASSERT_TRUE(j.contains("per_class"));
  ASSERT_EQ(j["per_class"].size(), k);
  for (size_t c = 0; c < k; ++c) {
    const auto& entry = j["per_class"][c];
    EXPECT_EQ(entry.at("name").get<std::string>(), classes[c].name);
    EXPECT_TRUE(entry.contains("iou")) << entry;
    EXPECT_TRUE(entry.contains("acc")) << entry;
  }
  ASSERT_TRUE(j.contains("confusion"));
  ASSERT_EQ(j["confusion"].size(), k);
  int64_t counted = 0;
  for (const auto& row : j["confusion"]) {
    ASSERT_EQ(row.size(), k);
    for (const auto& v : row) counted += v.get<int64_t>();
  }
  // Every non-void pixel of the validation labels is counted once.
  int64_t labelled = 0;
  for (const auto& s : read_list(data_, data_ / "val.txt")) {
    const cv::Mat label = read_label(s.label, make_label_spec(static_cast<int64_t>(k), std::nullopt));
    labelled += static_cast<int64_t>(label.total()) - cv::countNonZero(label == kIgnoreLabel);
  }
  EXPECT_EQ(counted, labelled);
}

// --per-image: a row per listed image, in list order, holding the scores of the mask `predict` writes
// for it against its label; the JSON's boundary F1 is the mean of the rows', and is printed. The CSV
// cannot be the JSON.
TEST_F(CliRun, EvalPerImageRowsScorePredictsMasksAndAverageToTheJsonsBoundaryF1) {
  const fs::path json_file = dir_.path / "metrics.json", csv = dir_.path / "images.csv", masks = dir_.path / "masks";
  const std::string eval = "eval --checkpoint " + quote(run_ / "best.pt") + " --data " + quote(data_) + " --json " +
                           quote(json_file);
  const Result same = segnet_cli(eval + " --per-image " + quote(json_file), dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(same, "--per-image"));
  EXPECT_FALSE(fs::exists(json_file));
  const Result r = segnet_cli(eval + " --per-image " + quote(csv), dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(slurp(json_file));
  ASSERT_TRUE(j["bf"].is_number()) << j["bf"];
  char bf[32];
  std::snprintf(bf, sizeof bf, "%.4f", j["bf"].get<double>());
  EXPECT_TRUE(contains(r.out, "\nboundary F1      " + std::string(bf) + "\n")) << r.out;

  const auto samples = read_list(data_, data_ / "val.txt");
  std::string images;
  for (const auto& s : samples) images += " " + quote(s.image);
  ASSERT_EQ(segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(masks) + images, dir_.path).status, 0);
  const int64_t k = static_cast<int64_t>(read_classes_csv(data_ / "classes.csv").size());
  BoundaryF1 boundary(k);
  const auto rows = lines_of(slurp(csv));
  ASSERT_EQ(rows.size(), samples.size() + 1) << slurp(csv);
  EXPECT_EQ(rows[0], "image,global_acc,miou,bf");
  for (size_t i = 0; i < samples.size(); ++i) {
    const cv::Mat mask = cv::imread((masks / samples[i].image.stem()).string() + ".png", cv::IMREAD_UNCHANGED);
    const cv::Mat label = read_label(samples[i].label, make_label_spec(k, std::nullopt));
    ConfusionMatrix image(k);
    image.add(label_tensor(mask), label_tensor(label));
    const double image_bf = boundary.add(label_tensor(mask), label_tensor(label));
    std::istringstream row(rows[i + 1]);
    std::string name, acc, miou, bf_text;
    ASSERT_TRUE(std::getline(row, name, ',') && std::getline(row, acc, ',') && std::getline(row, miou, ',') &&
                std::getline(row, bf_text))
        << rows[i + 1];
    EXPECT_EQ(name, samples[i].image.string());
    EXPECT_NEAR(std::stod(acc), image.global_accuracy(), 1e-5) << name;
    EXPECT_NEAR(std::stod(miou), image.mean_iou(), 1e-5) << name;
    EXPECT_NEAR(std::stod(bf_text), image_bf, 1e-5) << name;
  }
  EXPECT_NEAR(boundary.mean(), j["bf"].get<double>(), 1e-12);
  for (int64_t c = 0; c < k; ++c) {
    const auto& v = j["per_class"][c]["bf"];
    if (std::isnan(boundary.class_scores()[c])) EXPECT_TRUE(v.is_null()) << c;
    else EXPECT_NEAR(v.get<double>(), boundary.class_scores()[c], 1e-12) << c;
  }
}

TEST_F(CliRun, PredictWritesIdsColoursAndOverlayAtTheInputSize) {
  // A size unlike the training size (24x32) and with odd sides.
  cv::Mat image(37, 53, CV_8UC3);
  cv::randu(image, 0, 256);
  const fs::path input = dir_.path / "street.png", out = dir_.path / "pred";
  ASSERT_TRUE(cv::imwrite(input.string(), image));
  const Result r =
      segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(out) + " " + quote(input),
                 dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;

  const cv::Mat ids = cv::imread((out / "street.png").string(), cv::IMREAD_UNCHANGED);
  const cv::Mat color = cv::imread((out / "street_color.png").string(), cv::IMREAD_UNCHANGED);
  const cv::Mat over = cv::imread((out / "street_overlay.png").string(), cv::IMREAD_UNCHANGED);
  ASSERT_FALSE(ids.empty());
  ASSERT_FALSE(color.empty());
  ASSERT_FALSE(over.empty());
  EXPECT_EQ(ids.type(), CV_8UC1);
  EXPECT_EQ(color.type(), CV_8UC3);
  EXPECT_EQ(over.type(), CV_8UC3);
  EXPECT_EQ(ids.size(), image.size());
  EXPECT_EQ(color.size(), image.size());
  EXPECT_EQ(over.size(), image.size());
  ASSERT_EQ(ids.type(), CV_8UC1);
  ASSERT_EQ(color.size(), ids.size());

  const auto classes = read_classes_csv(data_ / "classes.csv");
  double max_id = 0;
  cv::minMaxLoc(ids, nullptr, &max_id);
  EXPECT_LT(max_id, static_cast<double>(classes.size()));
  // Each colour pixel is its class's colour (files are BGR on disk).
  int wrong = 0;
  for (int y = 0; y < ids.rows; ++y)
    for (int x = 0; x < ids.cols; ++x) {
      const int id = ids.at<uint8_t>(y, x);
      if (id >= static_cast<int>(classes.size())) continue;
      const auto& rgb = classes[id].rgb;
      if (color.at<cv::Vec3b>(y, x) != cv::Vec3b(rgb[2], rgb[1], rgb[0])) ++wrong;
    }
  EXPECT_EQ(wrong, 0);
}

TEST_F(CliRun, EvalRejectsTruncatedCheckpointNamingIt) {
  const fs::path truncated = dir_.path / "truncated.pt", json_file = dir_.path / "m.json";
  fs::copy_file(run_ / "last.pt", truncated);
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  const Result r = segnet_cli("eval --checkpoint " + quote(truncated) + " --data " + quote(data_) + " --json " +
                                  quote(json_file),
                              dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, truncated.string()));
  EXPECT_FALSE(fs::exists(json_file));
}

TEST_F(CliRun, EvalRejectsFileThatIsNotACheckpointNamingIt) {
  const fs::path png = dir_.path / "picture.png";
  ASSERT_TRUE(cv::imwrite(png.string(), cv::Mat(8, 8, CV_8UC3, cv::Scalar(1, 2, 3))));
  const Result r = segnet_cli("eval --checkpoint " + quote(png) + " --data " + quote(data_), dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, png.string()));
}

TEST_F(CliRun, TrainIntoExistingRunWithoutResumeFailsAndLeavesItUntouched) {
  const std::string last = slurp(run_ / "last.pt"), best = slurp(run_ / "best.pt"),
                    metrics = slurp(run_ / "metrics.csv");
  const Result r = segnet_cli("train --data " + quote(data_) +
                                  " --model segnet-basic --size 24x32 --epochs 1 --batch 2 --out " + quote(run_),
                              dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, (run_ / "last.pt").string()));
  EXPECT_TRUE(slurp(run_ / "last.pt") == last) << "last.pt changed";
  EXPECT_TRUE(slurp(run_ / "best.pt") == best) << "best.pt changed";
  EXPECT_EQ(slurp(run_ / "metrics.csv"), metrics);
}

// The run's config.json says what it was: a resume with another model names the flag and both values.
TEST_F(CliRun, ResumeWithAnotherModelFailsNamingTheFlagAndTheRunsModel) {
  const std::string last = slurp(run_ / "last.pt"), metrics = slurp(run_ / "metrics.csv");
  const Result r = segnet_cli("train --data " + quote(data_) +
                                  " --model segnet --size 24x32 --epochs 2 --batch 2 --resume --out " + quote(run_),
                              dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--model"));
  EXPECT_TRUE(contains(r.err, "segnet-basic")) << r.err;
  EXPECT_TRUE(contains(r.err, (run_ / "config.json").string())) << r.err;
  EXPECT_TRUE(slurp(run_ / "last.pt") == last) << "last.pt changed";
  EXPECT_EQ(slurp(run_ / "metrics.csv"), metrics);
}

// --resume needs only the run folder: the options come from its config.json. --config starts a new run
// from a saved one's options, command-line flags winning.
TEST_F(CliRun, ResumeAndConfigTakeTheOptionsOfASavedRun) {
  Result r = segnet_cli("train --resume --out " + quote(run_), dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "already trained to 1 epochs")) << r.out;
  r = segnet_cli("train --resume --lr 0.5 --out " + quote(run_), dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--lr"));
  EXPECT_TRUE(contains(r.err, "0.5")) << r.err;
  r = segnet_cli("train --config " + quote(run_ / "config.json") + " --seed 5 --out " + quote(dir_.path / "again"), dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream in(dir_.path / "again" / "config.json");
  const auto again = nlohmann::json::parse(in).at("options");
  std::ifstream first_in(run_ / "config.json");
  auto first = nlohmann::json::parse(first_in).at("options");
  EXPECT_EQ(again.at("seed"), 5);
  first["seed"] = 5;
  EXPECT_EQ(again, first);
}

TEST(Cli, VersionNamesTheReleaseAndTheCommit) {
  TempDir dir;
  const Result r = segnet_cli("--version", dir.path);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("segnet 0.", 0), 0u) << r.out;
  EXPECT_TRUE(contains(r.out, "(commit ")) << r.out;
}

// Silent pitfalls made loud: a misspelled validation list, eval of a folder layout without a list
// (which scores every image, training ones included), synth over an existing dataset.
TEST_F(CliRun, MistakesThatUsedToPassSilentlyAreNamed) {
  Result r = segnet_cli("train --data " + quote(data_) + " --val-list vall.txt --model segnet-basic --size 24x32 --out " +
                            quote(dir_.path / "run"),
                        dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--val-list"));
  EXPECT_TRUE(contains(r.err, "vall.txt")) << r.err;
  EXPECT_FALSE(fs::exists(dir_.path / "run"));

  const fs::path folders = dir_.path / "folders";
  for (const auto& s : read_list(data_, data_ / "val.txt")) {
    fs::create_directories(folders / "images"), fs::create_directories(folders / "masks");
    fs::copy(s.image, folders / "images" / s.image.filename());
    fs::copy(s.label, folders / "masks" / s.image.filename());
  }
  r = segnet_cli("eval --checkpoint " + quote(run_ / "last.pt") + " --data " + quote(folders), dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "scoring all")) << r.out;
  r = segnet_cli("eval --checkpoint " + quote(run_ / "last.pt") + " --data " + quote(folders) + " --list test.txt", dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--list"));

  const std::string classes = slurp(data_ / "classes.csv");
  r = segnet_cli("synth --out " + quote(data_) + " --count 4", dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, data_.string()));
  EXPECT_EQ(slurp(data_ / "classes.csv"), classes);

  // A checkpoint says which network it is and how many classes it has; --frames is a count.
  r = segnet_cli("bench --checkpoint " + quote(run_ / "last.pt") + " --num-classes 5 --iters 1", dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--num-classes"));
  r = segnet_cli("bench --checkpoint " + quote(run_ / "last.pt") + " --model segnet --iters 1", dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--model"));
  r = segnet_cli("predict --checkpoint " + quote(run_ / "last.pt") + " --out " + quote(dir_.path / "pred") +
                     " --frames -1 " + quote(read_list(data_, data_ / "val.txt")[0].image),
                 dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--frames"));
  // Flags for videos given with images alone, and for images with a video alone, would do nothing.
  r = segnet_cli("predict --checkpoint " + quote(run_ / "last.pt") + " --out " + quote(dir_.path / "pred") + " --masks " +
                     quote(read_list(data_, data_ / "val.txt")[0].image),
                 dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--masks"));
  r = segnet_cli("predict --checkpoint " + quote(run_ / "last.pt") + " --out " + quote(dir_.path / "pred") +
                     " --probabilities " + quote(dir_.path / "drive.avi"),
                 dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--probabilities"));
  EXPECT_FALSE(fs::exists(dir_.path / "pred"));
  // An empty value (an unset shell variable) is not taken as the option left out, or as this folder.
  r = segnet_cli("eval --checkpoint " + quote(run_ / "last.pt") + " --data " + quote(data_) + " --json ''", dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--json: is empty"));
  r = segnet_cli("predict --checkpoint " + quote(run_ / "last.pt") + " --out " + quote(dir_.path / "pred") + " ''", dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "an input is an empty path"));
  EXPECT_FALSE(fs::exists(dir_.path / "pred"));
}

TEST_F(CliRun, PredictRejectsMissingInputNamingIt) {
  const fs::path missing = dir_.path / "missing.png", out = dir_.path / "pred";
  const Result r =
      segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(out) + " " + quote(missing),
                 dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, missing.string()));
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(CliRun, PredictRejectsTruncatedImageWithOneErrorLine) {
  const fs::path truncated = dir_.path / "truncated.png", out = dir_.path / "pred";
  cv::Mat noise(40, 40, CV_8UC3);
  cv::randu(noise, 0, 256);
  ASSERT_TRUE(cv::imwrite(truncated.string(), noise));
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  const Result r =
      segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(out) + " " + quote(truncated),
                 dir_.path);
  // Also catches decoder chatter (libpng's own "libpng error: ..." line) leaking onto stderr.
  EXPECT_TRUE(FailsWithErrorNaming(r, truncated.string()));
  EXPECT_FALSE(fs::exists(out / "truncated.png"));
}

TEST(Cli, TrainRejectsSizesThatAreNotTwoPositiveNumbers) {
  TempDir dir;
  for (const std::string size : {"0x5", "abc"}) {
    const Result r = segnet_cli("train --data " + quote(dir.path / "data") + " --out " + quote(dir.path / "run") +
                                    " --size " + size,
                                dir.path);
    EXPECT_TRUE(FailsWithErrorNaming(r, "--size"));
    EXPECT_TRUE(contains(r.err, size)) << r.err;
    EXPECT_FALSE(fs::exists(dir.path / "run"));
  }
}

TEST(Cli, TrainFailsNamingImageMissingFromTheList) {
  TempDir dir;
  const fs::path data = dir.path / "data";
  fs::create_directories(data / "img");
  fs::create_directories(data / "lab");
  ASSERT_TRUE(cv::imwrite((data / "img" / "a.png").string(), cv::Mat(8, 8, CV_8UC3, cv::Scalar(9, 9, 9))));
  ASSERT_TRUE(cv::imwrite((data / "lab" / "a.png").string(), cv::Mat(8, 8, CV_8UC1, cv::Scalar(1))));
  ASSERT_TRUE(cv::imwrite((data / "lab" / "b.png").string(), cv::Mat(8, 8, CV_8UC1, cv::Scalar(0))));
  std::ofstream(data / "train.txt") << "img/a.png lab/a.png\nimg/b.png lab/b.png\n";
  std::ofstream(data / "classes.csv") << "id,name,r,g,b\n0,sky,0,0,255\n1,road,128,64,128\n";
  const Result r = segnet_cli("train --data " + quote(data) + " --model segnet-basic --size 16x16 --epochs 1 --out " +
                                  quote(dir.path / "run"),
                              dir.path);
  // train reports "checking N training images" before it finds the missing file.
  EXPECT_TRUE(FailsWithErrorNaming(r, (data / "img" / "b.png").string(), /*after_progress=*/true));
  EXPECT_FALSE(fs::exists(dir.path / "run" / "last.pt"));
}

// The overlay is the stated blend, alpha 0.5 of the class colour over the image, channel by channel
// (writing the colour image once converted it to BGR in place, so overlays had red and blue swapped).
TEST_F(CliRun, PredictOverlayIsHalfClassColourHalfImage) {
  cv::Mat image(24, 32, CV_8UC3);
  cv::randu(image, 0, 256);
  const fs::path input = dir_.path / "scene.png", out = dir_.path / "pred";
  ASSERT_TRUE(cv::imwrite(input.string(), image));  // BGR on disk, like every file read back below
  const Result r = segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(out) + " " + quote(input),
                              dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;
  const cv::Mat ids = cv::imread((out / "scene.png").string(), cv::IMREAD_UNCHANGED);
  const cv::Mat over = cv::imread((out / "scene_overlay.png").string(), cv::IMREAD_COLOR);
  const auto classes = read_classes_csv(data_ / "classes.csv");
  ASSERT_EQ(over.size(), image.size());
  int wrong = 0;
  for (int y = 0; y < ids.rows; ++y)
    for (int x = 0; x < ids.cols; ++x) {
      const auto& rgb = classes[ids.at<uint8_t>(y, x)].rgb;
      const cv::Vec3b bgr(rgb[2], rgb[1], rgb[0]), pixel = image.at<cv::Vec3b>(y, x), blended = over.at<cv::Vec3b>(y, x);
      for (int c = 0; c < 3; ++c)
        if (std::abs(blended[c] - (0.5 * bgr[c] + 0.5 * pixel[c])) > 1) ++wrong;
    }
  EXPECT_EQ(wrong, 0);
}

// Batched inference writes the masks one-by-one inference writes (fp32).
TEST_F(CliRun, PredictInBatchesWritesTheMasksOfOneByOne) {
  const fs::path one = dir_.path / "one", four = dir_.path / "four";
  for (const auto& [out, batch] : {std::pair{one, 1}, std::pair{four, 4}}) {
    const Result r = segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(out) +
                                    " --batch " + std::to_string(batch) + " " + quote(data_ / "train"),
                                dir_.path);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "batch " + std::to_string(batch))) << r.out;
  }
  int64_t pixels = 0, differing = 0, images = 0;
  for (const auto& e : fs::directory_iterator(data_ / "train")) {
    const std::string mask = e.path().stem().string() + ".png";
    const cv::Mat a = cv::imread((one / mask).string(), cv::IMREAD_UNCHANGED), b = cv::imread((four / mask).string(), cv::IMREAD_UNCHANGED);
    ASSERT_FALSE(a.empty());
    ASSERT_EQ(a.size(), b.size());
    pixels += static_cast<int64_t>(a.total());
    differing += cv::countNonZero(a != b);
    ++images;
  }
  EXPECT_EQ(images, 5);
  EXPECT_LE(differing * 10000, pixels) << differing << " of " << pixels << " pixels differ";
}

// A video of N frames gives an overlay video of N frames of its size, and N masks with --masks.
TEST_F(CliRun, PredictVideoWritesAnOverlayFrameAndAMaskPerInputFrame) {
  const fs::path video = dir_.path / "drive.avi", out = dir_.path / "pred";
  cv::VideoWriter writer(video.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 12, cv::Size(48, 40));
  ASSERT_TRUE(writer.isOpened());
  for (int i = 0; i < 7; ++i) {
    cv::Mat frame(40, 48, CV_8UC3);
    cv::randu(frame, 0, 256);
    writer.write(frame);
  }
  writer.release();
  const Result r = segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(out) +
                                  " --batch 3 --masks " + quote(video),
                              dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "7 frames")) << r.out;
  cv::VideoCapture result((out / "drive_overlay.avi").string());
  ASSERT_TRUE(result.isOpened());
  EXPECT_EQ(result.get(cv::CAP_PROP_FPS), 12);
  int frames = 0;
  for (cv::Mat frame; result.read(frame); ++frames) EXPECT_EQ(frame.size(), cv::Size(48, 40));
  EXPECT_EQ(frames, 7);
  int masks = 0;
  for (const auto& e : fs::directory_iterator(out / "drive_masks")) {
    EXPECT_EQ(cv::imread(e.path().string(), cv::IMREAD_UNCHANGED).size(), cv::Size(48, 40));
    ++masks;
  }
  EXPECT_EQ(masks, 7);
  EXPECT_FALSE(contains(r.err, "warning")) << r.err;

  // The same file cut short (a copy that stopped downloading): the frames it holds, and a warning that
  // it announces more.
  const fs::path cut = dir_.path / "cut.avi";
  {
    std::ifstream in(video, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() * 6 / 10);
  }
  const Result c = segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(out) + " " + quote(cut),
                              dir_.path);
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_TRUE(contains(c.err, "cut.avi ended after ")) << c.err;
  EXPECT_TRUE(contains(c.err, " of the 7 frames it announces")) << c.err;
  cv::VideoCapture partial((out / "cut_overlay.avi").string());
  int held = 0;
  for (cv::Mat frame; partial.read(frame);) ++held;
  EXPECT_GT(held, 0);
  EXPECT_LT(held, 7);
}

TEST_F(CliRun, PredictRejectsUnreadableVideoNamingIt) {
  const fs::path video = dir_.path / "broken.mp4";
  std::ofstream(video) << "not a video at all";
  const Result r = segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(dir_.path / "pred") +
                                  " " + quote(video),
                              dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, video.string()));
  EXPECT_FALSE(fs::exists(dir_.path / "pred" / "broken_overlay.avi"));
}

TEST_F(CliRun, PredictRejectsCameraThatDoesNotOpen) {
  const Result r = segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(dir_.path / "pred") +
                                  " --camera 97",
                              dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "camera 97"));
}

TEST_F(CliRun, EvalRecordsItsInferenceOptionsInTheJson) {
  const fs::path json_file = dir_.path / "metrics.json";
  const Result r = segnet_cli("eval --checkpoint " + quote(run_ / "best.pt") + " --data " + quote(data_) +
                                  " --tta flip --tta-scales 0.75,1 --sliding-window --window-overlap 0.5 --json " +
                                  quote(json_file),
                              dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream in(json_file);
  const nlohmann::json j = nlohmann::json::parse(in).at("inference");
  EXPECT_EQ(j.at("tta"), "flip") << j;
  EXPECT_EQ(j.at("tta_scales"), nlohmann::json({0.75, 1.0})) << j;
  EXPECT_EQ(j.at("sliding_window"), true) << j;
  EXPECT_EQ(j.at("window_overlap"), 0.5) << j;
  EXPECT_EQ(j.at("precision"), "fp32") << j;
  EXPECT_EQ(j.at("mc_samples"), 1) << j;
}

TEST_F(CliRun, BadTtaOptionsFailNamingTheirFlag) {
  const std::string eval = "eval --checkpoint " + quote(run_ / "best.pt") + " --data " + quote(data_);
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli(eval + " --tta-scales 1,0", dir_.path), "--tta-scales"));
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli(eval + " --tta mirror", dir_.path), "--tta"));
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli(eval + " --sliding-window --window-overlap 1", dir_.path), "--window-overlap"));
  // Without --sliding-window the overlap would be silently ignored.
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli(eval + " --window-overlap 0.5", dir_.path), "--sliding-window"));
}

// Images of two shapes, one of them wider than the training size (24x32), in one batch: each mask
// comes back at its image's size.
TEST_F(CliRun, PredictWithTtaAndSlidingWindowWritesMasksAtEachInputsSize) {
  const fs::path in = dir_.path / "in", out = dir_.path / "pred";
  fs::create_directories(in);
  const std::vector<std::pair<std::string, cv::Size>> images = {{"wide", {80, 30}}, {"square", {32, 24}}};
  for (const auto& [name, size] : images) {
    cv::Mat image(size, CV_8UC3);
    cv::randu(image, 0, 256);
    ASSERT_TRUE(cv::imwrite((in / (name + ".png")).string(), image));
  }
  const Result r = segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(out) +
                                  " --batch 2 --tta flip --tta-scales 1,1.5 --sliding-window " + quote(in),
                              dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;
  for (const auto& [name, size] : images) {
    const cv::Mat ids = cv::imread((out / (name + ".png")).string(), cv::IMREAD_UNCHANGED);
    ASSERT_FALSE(ids.empty()) << name;
    EXPECT_EQ(ids.size(), size) << name;
  }
}

TEST_F(CliRun, PredictRejectsBatchZeroNamingTheFlag) {
  const Result r = segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(dir_.path / "pred") +
                                  " --batch 0 " + quote(data_ / "train"),
                              dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--batch"));
}

TEST_F(CliRun, PredictRejectsAnOutputFolderThatIsAFileAndLeavesIt) {
  const fs::path file = dir_.path / "results";
  std::ofstream(file) << "keep me";
  const Result r = segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(file) + " " +
                                  quote(data_ / "train"),
                              dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, file.string()));
  EXPECT_EQ(slurp(file), "keep me");
}

TEST_F(CliRun, PseudoLabelWritesMasksOfClassesAndVoidAndReportsTheConfidentShare) {
  const fs::path out = dir_.path / "pseudo";
  const Result r = segnet_cli("pseudo-label --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(out) +
                                  " --threshold 0.3 " + quote(data_ / "train"),
                              dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "% of pixels confident")) << r.out;
  EXPECT_TRUE(contains(r.out, "void = 5")) << r.out;  // synth: 5 classes, void 5
  int masks = 0;
  for (const auto& e : fs::directory_iterator(out)) {
    const cv::Mat mask = cv::imread(e.path().string(), cv::IMREAD_UNCHANGED);
    double max_value = 0;
    cv::minMaxLoc(mask, nullptr, &max_value);
    EXPECT_LE(max_value, 5) << e.path();
    ++masks;
  }
  EXPECT_EQ(masks, 5);
  const Result bad = segnet_cli("pseudo-label --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(out) +
                                    " --threshold 1.5 " + quote(data_ / "train"),
                                dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(bad, "--threshold"));
  const Result bad_share = segnet_cli("pseudo-label --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(out) +
                                          " --class-share -0.1 " + quote(data_ / "train"),
                                      dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(bad_share, "--class-share"));
}

// Monte Carlo dropout through the program: a Bayesian model writes an uncertainty map; a plain one
// refuses --mc-samples, naming it.
TEST_F(CliRun, McSamplesWriteUncertaintyForABayesianModelAndAreRefusedOtherwise) {
  const fs::path run = dir_.path / "bayesian", out = dir_.path / "pred";
  const Result t = segnet_cli("train --data " + quote(data_) + " --model bayesian-segnet-basic --size 24x32 --epochs 1 "
                                  "--batch 2 --out " + quote(run),
                              dir_.path);
  ASSERT_EQ(t.status, 0) << t.err;
  const fs::path image = data_ / "val" / "val_5.png";
  const Result p = segnet_cli("predict --checkpoint " + quote(run / "best.pt") + " --out " + quote(out) +
                                  " --mc-samples 3 " + quote(image),
                              dir_.path);
  ASSERT_EQ(p.status, 0) << p.err;
  const cv::Mat uncertainty = cv::imread((out / "val_5_uncertainty.png").string(), cv::IMREAD_COLOR);
  EXPECT_EQ(uncertainty.size(), cv::imread(image.string()).size());
  const Result e = segnet_cli("eval --checkpoint " + quote(run / "best.pt") + " --data " + quote(data_) + " --mc-samples 2",
                              dir_.path);
  EXPECT_EQ(e.status, 0) << e.err;
  EXPECT_TRUE(contains(e.out, "mIoU")) << e.out;
  const Result plain = segnet_cli("predict --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(out) +
                                      " --mc-samples 3 " + quote(image),
                                  dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(plain, "--mc-samples"));
}

TEST_F(CliRun, BenchTimesInferenceAndTrainingAndWritesJson) {
  for (const std::string mode : {"infer", "train"}) {
    const fs::path json_file = dir_.path / (mode + ".json");
    const Result r = segnet_cli("bench --model segnet-basic --size 24x32 --batch 2 --iters 1 --warmup 0 --mode " + mode +
                                    " --json " + quote(json_file),
                                dir_.path);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "images/s")) << r.out;
    std::ifstream in(json_file);
    const nlohmann::json j = nlohmann::json::parse(in);
    EXPECT_EQ(j.at("model"), "segnet-basic");
    EXPECT_EQ(j.at("mode"), mode);
    EXPECT_GT(j.at("images_per_s").get<double>(), 0);
  }
  const Result bad = segnet_cli("bench --model unet", dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(bad, "--model"));
}

// bf16 on a processor without AVX-512 still runs, but on a generic kernel (about 90 times slower than
// fp32 on Zen 3): the program says so, and only there.
TEST(Cli, Bf16WarnsOnlyWhereItIsSlow) {
  TempDir dir;
  const Result r = segnet_cli("bench --model segnet-basic --size 24x32 --iters 1 --warmup 0 --precision bf16", dir.path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(contains(r.err, "warning: --precision bf16 on a processor without AVX-512"), !has_fast_bf16(torch::kCPU)) << r.err;
  const Result fp32 = segnet_cli("bench --model segnet-basic --size 24x32 --iters 1 --warmup 0", dir.path);
  ASSERT_EQ(fp32.status, 0) << fp32.err;
  EXPECT_FALSE(contains(fp32.err, "warning")) << fp32.err;
}

TEST(Cli, BinaryModelPredictsZeroOr255MasksAndEvalReportsDice) {
  TempDir dir;
  const fs::path data = dir.path / "data", run = dir.path / "run", out = dir.path / "pred";
  ASSERT_EQ(segnet_cli("synth --binary --out " + quote(data) + " --count 6 --size 24x32", dir.path).status, 0);
  const Result t = segnet_cli("train --data " + quote(data) + " --task binary --loss bce+dice --model segnet-basic "
                                  "--size 24x32 --epochs 1 --batch 2 --out " + quote(run),
                              dir.path);
  ASSERT_EQ(t.status, 0) << t.err;
  const Result p = segnet_cli("predict --checkpoint " + quote(run / "best.pt") + " --out " + quote(out) + " " +
                                  quote(data / "train"),
                              dir.path);
  ASSERT_EQ(p.status, 0) << p.err;
  const cv::Mat mask = cv::imread((out / "train_0.png").string(), cv::IMREAD_UNCHANGED);
  ASSERT_FALSE(mask.empty());
  EXPECT_EQ(cv::countNonZero((mask != 0) & (mask != 255)), 0);
  EXPECT_FALSE(fs::exists(out / "train_0_color.png"));
  EXPECT_TRUE(fs::exists(out / "train_0_overlay.png"));
  const Result e = segnet_cli("eval --checkpoint " + quote(run / "best.pt") + " --data " + quote(data), dir.path);
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_TRUE(contains(e.out, "dice")) << e.out;
  const Result wrong_loss = segnet_cli("train --data " + quote(data) + " --task binary --loss ce --out " +
                                           quote(dir.path / "run2"),
                                       dir.path);
  EXPECT_TRUE(FailsWithErrorNaming(wrong_loss, "--loss"));
}

// Library checks come back naming the flag that set the option, and nothing is created.
// An output that is one of the job's inputs would destroy it: refused, the input untouched.
TEST_F(CliRun, OutputsThatAreInputsAreRefusedAndLeftAsTheyWere) {
  const fs::path ck = dir_.path / "model.pt";
  fs::copy_file(run_ / "last.pt", ck);
  const std::string bytes = slurp(ck);
  for (const auto& [args, flag] : std::vector<std::pair<std::string, std::string>>{
           {"export --checkpoint " + quote(ck) + " --out " + quote(ck), "--out"},
           {"eval --checkpoint " + quote(ck) + " --data " + quote(data_) + " --json " + quote(ck), "--json"},
           {"eval --checkpoint " + quote(ck) + " --data " + quote(data_) + " --per-image " + quote(ck), "--per-image"},
           {"bench --size 24x32 --iters 1 --checkpoint " + quote(ck) + " --json " +
                quote(dir_.path / "." / "model.pt"),
            "--json"}}) {
    const Result r = segnet_cli(args, dir_.path);
    EXPECT_TRUE(FailsWithErrorNaming(r, flag)) << args;
    EXPECT_TRUE(contains(r.err, "an input of this job")) << r.err;
    EXPECT_TRUE(slurp(ck) == bytes) << args;
  }
}

// eval scores labels as the checkpoint's class ids: a dataset whose classes.csv has another number of
// classes is refused, naming it, rather than scored wrongly.
TEST_F(CliRun, EvalRefusesADatasetWithAnotherNumberOfClasses) {
  const fs::path other = dir_.path / "other";
  fs::copy(data_, other, fs::copy_options::recursive);
  write_text(other / "classes.csv", "id,name,r,g,b\n0,a,0,0,0\n1,b,255,255,255\n");
  const Result r = segnet_cli("eval --checkpoint " + quote(run_ / "last.pt") + " --data " + quote(other), dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, (other / "classes.csv").string()));
  EXPECT_TRUE(contains(r.err, "has 2 classes")) << r.err;
}

// --patience N ends training after the first epoch that leaves val mIoU N epochs behind its best
// (found here from metrics.csv). Resumed with the same patience the run trains nothing and says why;
// with a larger one it goes on, and config.json keeps it. Without validation images it is refused.
TEST(Cli, PatienceStopsTrainingOnceValMiouStallsAndAResumeMayRaiseIt) {
  TempDir dir;
  const fs::path data = dir.path / "data", run = dir.path / "run";
  ASSERT_EQ(segnet_cli("synth --out " + quote(data) + " --count 6 --size 24x32", dir.path).status, 0);
  constexpr int64_t epochs = 12;
  // A learning rate too small to matter: val mIoU moves only with batch norm's running statistics.
  const std::string options = "train --data " + quote(data) + " --model segnet-basic --size 24x32 --batch 2 --lr 1e-9 "
                              "--augment none --epochs " + std::to_string(epochs);
  const std::string train = options + " --out " + quote(run);
  const Result first = segnet_cli(train + " --patience 1", dir.path);
  ASSERT_EQ(first.status, 0) << first.err;
  const auto rows = lines_of(slurp(run / "metrics.csv"));
  ASSERT_EQ(csv_field(rows.at(0), 4), "val_miou");
  int64_t stop = epochs, best_epoch = 0;
  double best = -1;
  for (size_t i = 1; i < rows.size(); ++i) {
    const double miou = std::stod(csv_field(rows[i], 4));  // val_miou
    const auto epoch = static_cast<int64_t>(i);
    if (miou > best) best = miou, best_epoch = epoch;
    else if (epoch - best_epoch >= 1) {
      stop = epoch;
      break;
    }
  }
  ASSERT_LT(stop, epochs) << "val mIoU rose every epoch: nothing to stop\n" << slurp(run / "metrics.csv");
  EXPECT_EQ(static_cast<int64_t>(rows.size()) - 1, stop) << slurp(run / "metrics.csv");
  const std::string said = "stopping early after epoch " + std::to_string(stop) + ":";
  EXPECT_TRUE(contains(first.err, said)) << first.err;

  const std::string metrics = slurp(run / "metrics.csv");
  const Result again = segnet_cli(train + " --patience 1 --resume", dir.path);
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_TRUE(contains(again.err, said)) << again.err;
  EXPECT_FALSE(contains(again.out, "already trained")) << again.out;
  EXPECT_EQ(slurp(run / "metrics.csv"), metrics);

  const Result longer = segnet_cli(train + " --patience 3 --resume", dir.path);
  ASSERT_EQ(longer.status, 0) << longer.err;
  EXPECT_GT(lines_of(slurp(run / "metrics.csv")).size(), rows.size());
  EXPECT_EQ(nlohmann::json::parse(slurp(run / "config.json"))["options"]["patience"], 3);

  fs::remove(data / "val.txt");
  const Result blind = segnet_cli(options + " --patience 2 --out " + quote(dir.path / "run2"), dir.path);
  EXPECT_TRUE(FailsWithErrorNaming(blind, "--patience", true));
  EXPECT_TRUE(contains(blind.err, "val.txt")) << blind.err;
}

TEST(Cli, BadTrainingOptionsFailNamingTheirFlag) {
  TempDir dir;
  // --unlabeled: the pseudo-label flags' values are checked only in pseudo-label training.
  const std::string base = "train --data " + quote(dir.path) + " --unlabeled images --out " + quote(dir.path / "run") + " ";
  for (const auto& [args, flag] : std::vector<std::pair<std::string, std::string>>{
           {"--epochs 0", "--epochs"},
           {"--batch 0", "--batch"},
           {"--patience -1", "--patience"},
           {"--pseudo-threshold 1.5", "--pseudo-threshold"},
           {"--pseudo-class-share 2", "--pseudo-class-share"},
           {"--pseudo-scale-range 1.5,0.5", "--pseudo-scale-range"},
           {"--ema-decay 1", "--ema-decay"},
           {"--pseudo-rampup -1", "--pseudo-rampup"},
           {"--optimizer rmsprop", "--optimizer"},
           {"--decoder nearest", "--decoder"},
           {"--model unet", "--model"},
           {"--model segnet-basic --dilation 1,2", "--dilation"},
           {"--num-classes 300", "--num-classes"},
           {"--device tpu", "--device"},
           {"--void-color 1,2", "--void-color"},  // thrown while parsing: it once aborted the program
           {"--seed -1", "--seed"},               // not wrapped around to 2^64 - 1
           {"--lr inf", "--lr"},
           {"--threads -1", "--threads"},
           {"--threads 100000", "--threads"},  // more threads than cores: minutes for a second's work
           {"--world-size 100000", "--world-size"}}) {
    const Result r = segnet_cli(base + args, dir.path);
    EXPECT_TRUE(FailsWithErrorNaming(r, flag)) << args;
  }
  const Result r = segnet_cli("train --data " + quote(dir.path) + " --ema-decay 0.5 --out " + quote(dir.path / "run"), dir.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--ema-decay"));
  EXPECT_TRUE(contains(r.err, "--unlabeled")) << r.err;
  EXPECT_FALSE(fs::exists(dir.path / "run"));
}

TEST(Cli, MalformedOrImpossibleSizesAreRefusedNamingThem) {
  TempDir dir;
  for (const std::string text : {"abc", "0x10", "10x", "x10", "10x0", "10x20x30", "20000x10"}) {
    const Result r = segnet_cli("synth --out " + quote(dir.path / "d") + " --size " + text, dir.path);
    EXPECT_TRUE(FailsWithErrorNaming(r, "--size")) << text;
    EXPECT_TRUE(contains(r.err, text)) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir.path / "d"));
}

TEST_F(CliRun, ExportWritesAnOnnxModelAndSaysWhatItIs) {
  const fs::path onnx = dir_.path / "model.onnx";
  const Result r = segnet_cli("export --checkpoint " + quote(run_ / "best.pt") + " --out " + quote(onnx) +
                                  " --output labels --dynamic-size",
                              dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "opset 13")) << r.out;
  EXPECT_GT(fs::file_size(onnx), 1000u);
  EXPECT_FALSE(fs::exists(temporary_path_for(onnx)));
}

TEST_F(CliRun, ExportRejectsBadInputsWithOneLineAndWritesNothing) {
  const fs::path png = dir_.path / "picture.png", onnx = dir_.path / "model.onnx";
  ASSERT_TRUE(cv::imwrite(png.string(), cv::Mat(8, 8, CV_8UC3, cv::Scalar(1, 2, 3))));
  const std::string ck = " --checkpoint " + quote(run_ / "best.pt");
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli("export --checkpoint " + quote(png) + " --out " + quote(onnx), dir_.path),
                                   png.string()));
  const fs::path in_missing = dir_.path / "no_such_folder" / "model.onnx";
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli("export" + ck + " --out " + quote(in_missing), dir_.path),
                                   in_missing.string()));
  EXPECT_FALSE(fs::exists(in_missing.parent_path()));
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli("export" + ck + " --out " + quote(dir_.path), dir_.path),
                                   dir_.path.string()));
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli("export" + ck + " --out " + quote(onnx) + " --output scores", dir_.path),
                                   "--output"));
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli("export" + ck + " --out " + quote(onnx) + " --output probabilities --label-type int64",
                                              dir_.path),
                                   "--label-type"));
  EXPECT_FALSE(fs::exists(onnx));
  for (const auto& entry : fs::directory_iterator(dir_.path))
    EXPECT_NE(entry.path().extension(), ".onnx") << entry.path();
}

TEST_F(CliRun, InfoSaysWhatACheckpointHoldsAndWritesItsMetadataAsJson) {
  const fs::path ck = run_ / "last.pt", json_file = dir_.path / "info.json";
  const auto classes = read_classes_csv(data_ / "classes.csv");
  const Result r = segnet_cli("info " + quote(ck) + " --json " + quote(json_file), dir_.path);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string k = std::to_string(classes.size());
  EXPECT_TRUE(contains(r.out, "\nmodel            segnet-basic, decoder indices, ")) << r.out;
  EXPECT_TRUE(contains(r.out, "\ntask             multiclass, " + k + " classes\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "\ninput            RGB at 24x32; ")) << r.out;
  EXPECT_TRUE(contains(r.out, "\ntrained          1 epoch; best val mIoU ")) << r.out;
  EXPECT_TRUE(contains(r.out, "\noptimizer        sgd state")) << r.out;
  EXPECT_TRUE(contains(r.out, "\nint8             not calibrated")) << r.out;
  EXPECT_FALSE(contains(r.out, "teacher")) << r.out;
  for (const auto& c : classes) EXPECT_TRUE(contains(r.out, " " + c.name + " ")) << c.name << "\n" << r.out;

  const auto j = nlohmann::json::parse(slurp(json_file));
  EXPECT_EQ(j["format"], "segnet-checkpoint");
  EXPECT_EQ(j["model"], "segnet-basic");
  EXPECT_EQ(j["size"], nlohmann::json({24, 32}));
  EXPECT_EQ(j["epoch"], 1);
  EXPECT_EQ(j["optimizer"], "sgd");
  EXPECT_EQ(j["teacher"], false);
  EXPECT_EQ(j["weight_average"], false);
  EXPECT_EQ(j["bytes"].get<uint64_t>(), fs::file_size(ck));
  SegNet fresh(SegNetOptions(Model::SegNetBasic, static_cast<int64_t>(classes.size())));
  EXPECT_EQ(j["parameters"].get<int64_t>(), parameter_count(*fresh));
  ASSERT_EQ(j["classes"].size(), classes.size());
  for (size_t i = 0; i < classes.size(); ++i) EXPECT_EQ(j["classes"][i]["name"], classes[i].name);

  // A calibrated copy says how many activation ranges it holds: one per quantized activation.
  const fs::path int8 = dir_.path / "int8.pt";
  ASSERT_EQ(segnet_cli("calibrate --checkpoint " + quote(ck) + " --data " + quote(data_) + " --images 1 --threads 1 --out " +
                           quote(int8),
                       dir_.path)
                .status,
            0);
  const Result calibrated = segnet_cli("info " + quote(int8), dir_.path);
  ASSERT_EQ(calibrated.status, 0) << calibrated.err;
  const auto ranges = activation_count(SegNetOptions(Model::SegNetBasic, static_cast<int64_t>(classes.size())));
  EXPECT_TRUE(contains(calibrated.out, "\nint8             calibrated: " + std::to_string(ranges) + " activation ranges\n"))
      << calibrated.out;
}

TEST_F(CliRun, InfoRefusesDamagedCheckpointsAndJsonOverTheCheckpoint) {
  const fs::path truncated = dir_.path / "truncated.pt", copy = dir_.path / "copy.pt", json_file = dir_.path / "info.json";
  fs::copy_file(run_ / "last.pt", truncated);
  fs::resize_file(truncated, fs::file_size(truncated) - 1);
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli("info " + quote(truncated) + " --json " + quote(json_file), dir_.path),
                                   truncated.string()));
  EXPECT_FALSE(fs::exists(json_file));
  const fs::path missing = dir_.path / "missing.pt";
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli("info " + quote(missing), dir_.path), missing.string()));
  fs::copy_file(run_ / "last.pt", copy);
  const std::string before = slurp(copy);
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli("info " + quote(copy) + " --json " + quote(copy), dir_.path), "--json"));
  EXPECT_EQ(slurp(copy), before);
}

// The CliRun dataset again with every image stored as 16-bit values 16 v (0..4080), which the input
// range 0..4080 maps back to exactly v: training and inference must be the 8-bit run's, number for number.
TEST_F(CliRun, SixteenBitImagesThroughAnInputRangeAreTheirEightBitSelves) {
  const fs::path deep = dir_.path / "data16", run16 = dir_.path / "run16";
  fs::copy(data_, deep, fs::copy_options::recursive);
  for (const char* list : {"train.txt", "val.txt"})
    for (const auto& sample : read_list(deep, deep / list)) {
      cv::Mat sixteen;
      cv::imread(sample.image.string(), cv::IMREAD_COLOR).convertTo(sixteen, CV_16UC3, 16);
      ASSERT_TRUE(cv::imwrite(sample.image.string(), sixteen)) << sample.image;
    }
  const std::string train = "train --data " + quote(deep) + " --model segnet-basic --size 24x32 --epochs 1 --batch 2 --out ";
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli(train + quote(dir_.path / "no_range"), dir_.path),
                                   "16-bit image (values 0..", /*after_progress=*/true));
  const Result trained = segnet_cli(train + quote(run16) + " --input-range 0,4080", dir_.path);
  ASSERT_EQ(trained.status, 0) << trained.err;
  // epoch, train loss, val G, C and mIoU
  const auto metrics = [](const fs::path& run) {
    const std::string row = lines_of(slurp(run / "metrics.csv")).at(1);
    size_t end = 0;
    for (int field = 0; field < 5; ++field) end = row.find(',', end) + 1;
    return row.substr(0, end);
  };
  EXPECT_EQ(metrics(run16), metrics(run_));
  EXPECT_TRUE(contains(segnet_cli("info " + quote(run16 / "last.pt"), dir_.path).out, "\ninput range      0..4080: ")) << run16;

  const Result eval8 = segnet_cli("eval --checkpoint " + quote(run_ / "last.pt") + " --data " + quote(data_), dir_.path);
  const Result eval16 = segnet_cli("eval --checkpoint " + quote(run16 / "last.pt") + " --data " + quote(deep), dir_.path);
  ASSERT_EQ(eval16.status, 0) << eval16.err;
  EXPECT_EQ(eval16.out.substr(eval16.out.find("\nglobal accuracy")), eval8.out.substr(eval8.out.find("\nglobal accuracy")));
  const std::string predict16 = "predict --checkpoint " + quote(run16 / "last.pt") + " --out ";
  ASSERT_EQ(segnet_cli("predict --checkpoint " + quote(run_ / "last.pt") + " --out " + quote(dir_.path / "p8") + " " +
                           quote(data_ / "val"),
                       dir_.path)
                .status,
            0);
  const Result predicted = segnet_cli(predict16 + quote(dir_.path / "p16") + " " + quote(deep / "val"), dir_.path);
  ASSERT_EQ(predicted.status, 0) << predicted.err;
  int compared = 0;
  for (const auto& entry : fs::directory_iterator(dir_.path / "p8")) {
    const std::string name = entry.path().filename().string();  // masks, colours and overlays
    const cv::Mat a = cv::imread(entry.path().string(), cv::IMREAD_UNCHANGED);
    const cv::Mat b = cv::imread((dir_.path / "p16" / name).string(), cv::IMREAD_UNCHANGED);
    ASSERT_EQ(a.size(), b.size()) << name;
    EXPECT_EQ(cv::norm(a, b, cv::NORM_INF), 0) << name;
    ++compared;
  }
  EXPECT_GT(compared, 0);
  // The model's other readers take the range too.
  EXPECT_EQ(segnet_cli("calibrate --checkpoint " + quote(run16 / "last.pt") + " --data " + quote(deep) + " --images 2",
                       dir_.path)
                .status,
            0);
  EXPECT_EQ(segnet_cli("adapt --checkpoint " + quote(run16 / "last.pt") + " " + quote(deep / "val"), dir_.path).status, 0);
  const fs::path onnx = dir_.path / "m16.onnx";
  ASSERT_EQ(segnet_cli("export --checkpoint " + quote(run16 / "last.pt") + " --out " + quote(onnx), dir_.path).status, 0);
  EXPECT_TRUE(contains(slurp(onnx), "input_range_16bit")) << "the ONNX model's metadata names the range";

  // What the range does not fit: an 8-bit image, and video frames (8-bit).
  const fs::path flat = data_ / read_list(data_, data_ / "val.txt").at(0).image.lexically_relative(data_);
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli(predict16 + quote(dir_.path / "p") + " " + quote(flat), dir_.path),
                                   flat.string() + ": 8-bit image"));
  const fs::path video = dir_.path / "drive.avi";
  cv::VideoWriter writer(video.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 12, cv::Size(32, 24));
  ASSERT_TRUE(writer.isOpened());
  for (int i = 0; i < 2; ++i) writer.write(cv::Mat(24, 32, CV_8UC3, cv::Scalar(i, 50, 100)));
  writer.release();
  EXPECT_TRUE(FailsWithErrorNaming(segnet_cli(predict16 + quote(dir_.path / "v") + " " + quote(video), dir_.path),
                                   video.string() + ": video frames are 8-bit"));
}

// Runs the real `segnet` binary: exit statuses, files written and the one-line errors on stderr.
#include <segnet/data.h>

#include "temp_dir.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

using namespace segnet;
namespace fs = std::filesystem;
using segnet::test::TempDir;
using segnet::test::unique_temp_dir;

namespace {

std::string slurp(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string quote(const fs::path& p) { return "'" + p.string() + "'"; }

struct Result {
  int status = -1;  // exit status; -1 when the process did not exit normally
  std::string out, err;
};

// Runs `segnet ARGS`, capturing stdout and stderr through files in `scratch`.
Result segnet_cli(const std::string& args, const fs::path& scratch) {
  static int calls = 0;
  const std::string n = std::to_string(++calls);
  const fs::path out = scratch / ("cli" + n + ".stdout"), err = scratch / ("cli" + n + ".stderr");
  const std::string command = quote(SEGNET_CLI) + " " + args + " >" + quote(out) + " 2>" + quote(err);
  const int raw = std::system(command.c_str());
  Result r;
  r.status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

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

TEST_F(CliRun, ResumeWithAnotherModelFailsNamingLastCheckpoint) {
  const std::string last = slurp(run_ / "last.pt"), metrics = slurp(run_ / "metrics.csv");
  const Result r = segnet_cli("train --data " + quote(data_) +
                                  " --model segnet --size 24x32 --epochs 2 --batch 2 --resume --out " + quote(run_),
                              dir_.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, (run_ / "last.pt").string()));
  EXPECT_TRUE(contains(r.err, "segnet-basic")) << r.err;
  EXPECT_TRUE(slurp(run_ / "last.pt") == last) << "last.pt changed";
  EXPECT_EQ(slurp(run_ / "metrics.csv"), metrics);
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

TEST(Cli, TrainRejectsZeroSize) {
  TempDir dir;
  const Result r = segnet_cli("train --data " + quote(dir.path / "data") + " --out " + quote(dir.path / "run") +
                                  " --size 0x5",
                              dir.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--size"));
  EXPECT_TRUE(contains(r.err, "0x5")) << r.err;
  EXPECT_FALSE(fs::exists(dir.path / "run"));
}

TEST(Cli, TrainRejectsNonNumericSize) {
  TempDir dir;
  const Result r = segnet_cli("train --data " + quote(dir.path / "data") + " --out " + quote(dir.path / "run") +
                                  " --size abc",
                              dir.path);
  EXPECT_TRUE(FailsWithErrorNaming(r, "--size"));
  EXPECT_TRUE(contains(r.err, "abc")) << r.err;
  EXPECT_FALSE(fs::exists(dir.path / "run"));
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
  const Result r = segnet_cli("train --data " + quote(data) + " --model segnet-basic --size 8x8 --epochs 1 --out " +
                                  quote(dir.path / "run"),
                              dir.path);
  // train reports "checking N training images" before it finds the missing file.
  EXPECT_TRUE(FailsWithErrorNaming(r, (data / "img" / "b.png").string(), /*after_progress=*/true));
  EXPECT_FALSE(fs::exists(dir.path / "run" / "last.pt"));
}

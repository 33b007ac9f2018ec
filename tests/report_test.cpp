// Charts (curves.png, eval's confusion matrix and class IoU) and `segnet report`: the PNGs are written,
// decode, have their stated size, are not blank and hold each series' colour; bad input is named.
#include <segnet/evaluate.h>
#include <segnet/files.h>
#include <segnet/report.h>

#include "expect_error.h"
#include "temp_dir.h"
#include "run_cli.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <sys/wait.h>

using namespace segnet;
namespace fs = std::filesystem;
using segnet::test::contains;
using segnet::test::error_of;
using segnet::test::TempDir;
using segnet::test::CliResult;
using segnet::test::quote;
using segnet::test::segnet_cli;
using segnet::test::slurp;

namespace {

// The charts' colours (RGB), as charts.cpp sets them.
const cv::Vec3b kLossRgb{31, 119, 180}, kGlobalRgb{255, 127, 14}, kClassAvgRgb{44, 160, 44}, kMiouRgb{214, 39, 40},
    kBarRgb{70, 130, 180}, kMissingRgb{190, 190, 190};

cv::Mat read_chart(const fs::path& png) {
  cv::Mat image = cv::imread(png.string(), cv::IMREAD_COLOR);  // BGR
  EXPECT_FALSE(image.empty()) << png << " does not decode";
  return image;
}

// Pixels within a few levels of `rgb` (anti-aliased edges aside).
int pixels_of(const cv::Mat& bgr, cv::Vec3b rgb, int tolerance = 6) {
  int n = 0;
  for (int y = 0; y < bgr.rows; ++y)
    for (int x = 0; x < bgr.cols; ++x) {
      const auto p = bgr.at<cv::Vec3b>(y, x);
      if (std::abs(p[2] - rgb[0]) <= tolerance && std::abs(p[1] - rgb[1]) <= tolerance && std::abs(p[0] - rgb[2]) <= tolerance) ++n;
    }
  return n;
}

// Share of pixels that are not white: text, axes and data.
double inked_share(const cv::Mat& bgr) {
  int n = 0;
  for (int y = 0; y < bgr.rows; ++y)
    for (int x = 0; x < bgr.cols; ++x)
      if (bgr.at<cv::Vec3b>(y, x) != cv::Vec3b(255, 255, 255)) ++n;
  return double(n) / double(bgr.total());
}

std::vector<EpochMetrics> rising_run(int epochs, bool validation) {
  std::vector<EpochMetrics> rows;
  for (int e = 1; e <= epochs; ++e) {
    const double t = 1 - std::exp(-e / 4.0);
    rows.push_back({e, 2.0 - 1.5 * t, validation ? 0.6 + 0.3 * t : NAN, validation ? 0.4 + 0.3 * t : NAN,
                    validation ? 0.2 + 0.4 * t : NAN});
  }
  return rows;
}

const char* kHeader =
    "epoch,train_loss,val_global_acc,val_class_avg_acc,val_miou,seconds,images_per_s,data_wait_fraction,"
    "pseudo_confident_fraction,allreduce_wait_fraction\n";

// A three-class matrix: class 0 mostly right, class 1 half confused with 0, class 2 never in the truth.
ConfusionMatrix three_classes() { return ConfusionMatrix(3, {90, 10, 0, 50, 50, 0, 0, 0, 0}); }

size_t line_count(const std::string& text) { return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')); }

}  // namespace

TEST(Chart, TrainingCurvesHaveTheStatedSizeAndEachSeriesColour) {
  TempDir dir;
  const fs::path png = dir.path / "curves.png";
  draw_training_curves(rising_run(12, true), png);
  const cv::Mat image = read_chart(png);
  ASSERT_FALSE(image.empty());
  EXPECT_EQ(image.cols, kCurvesWidth);
  EXPECT_EQ(image.rows, kCurvesHeight);
  EXPECT_GT(inked_share(image), 0.02);
  for (const auto& [name, rgb] : {std::pair{"loss", kLossRgb}, std::pair{"G", kGlobalRgb}, std::pair{"C", kClassAvgRgb},
                                  std::pair{"mIoU", kMiouRgb}})
    EXPECT_GT(pixels_of(image, rgb), 200) << name;
  EXPECT_FALSE(fs::exists(temporary_path_for(png)));
}

TEST(Chart, TrainingCurvesWithoutValidationDrawTheLossAlone) {
  TempDir dir;
  const fs::path png = dir.path / "curves.png";
  draw_training_curves(rising_run(3, false), png);
  const cv::Mat image = read_chart(png);
  ASSERT_FALSE(image.empty());
  EXPECT_EQ(image.size(), cv::Size(kCurvesWidth, kCurvesHeight));
  EXPECT_GT(pixels_of(image, kLossRgb), 200);
  EXPECT_EQ(pixels_of(image, kGlobalRgb), 0);
  EXPECT_EQ(pixels_of(image, kMiouRgb), 0);
}

TEST(Chart, OneEpochAndNoEpochs) {
  TempDir dir;
  draw_training_curves(rising_run(1, true), dir.path / "one.png");
  const cv::Mat image = read_chart(dir.path / "one.png");
  ASSERT_FALSE(image.empty());
  EXPECT_GT(pixels_of(image, kMiouRgb), 20);  // a marker where there is no line yet
  EXPECT_TRUE(contains(error_of([&] { draw_training_curves({}, dir.path / "none.png"); }), "none.png"));
}

TEST(Chart, ConfusionIsRowNormalisedWithAGreyRowForAClassNotInTheTruth) {
  TempDir dir;
  const fs::path png = dir.path / "confusion.png";
  draw_confusion(three_classes(), {"road", "sidewalk", "sky"}, png);
  const cv::Mat image = read_chart(png);
  ASSERT_FALSE(image.empty());
  EXPECT_EQ(image.size(), cv::Size(kConfusionWidth, kConfusionHeight));
  EXPECT_GT(pixels_of(image, kMissingRgb, 2), 10000);  // the "sky" row
  // Row 0 is 0.9 / 0.1 and row 1 0.5 / 0.5: the colour scale runs from white to dark blue, so the cells
  // darken with the share: find the darkest and the two middle tones among the cells' pixels.
  int dark = 0, middle = 0;
  for (int y = 0; y < image.rows; ++y)
    for (int x = 0; x < image.cols; ++x) {
      const auto p = image.at<cv::Vec3b>(y, x);
      if (p[0] > p[2] + 40 && p[2] < 60) ++dark;                      // deep blue (0.9)
      if (p[0] > p[2] + 40 && p[2] > 90 && p[2] < 130) ++middle;        // middle blue (0.5)
    }
  EXPECT_GT(dark, 20000);
  EXPECT_GT(middle, 20000);
  EXPECT_TRUE(contains(error_of([&] { draw_confusion(three_classes(), {"road"}, dir.path / "bad.png"); }), "bad.png"));
}

TEST(Chart, ClassIouHasABarPerClassAndGrowsWithTheClasses) {
  TempDir dir;
  const fs::path png = dir.path / "iou.png";
  draw_class_iou(three_classes(), {"road", "sidewalk", "sky"}, png);
  const cv::Mat image = read_chart(png);
  ASSERT_FALSE(image.empty());
  EXPECT_EQ(image.size(), class_iou_chart_size(3));
  EXPECT_GT(pixels_of(image, kBarRgb), 3000);
  EXPECT_GT(class_iou_chart_size(40).height, class_iou_chart_size(3).height);
  std::vector<std::string> names;
  for (int i = 0; i < 40; ++i) names.push_back("class" + std::to_string(i));
  std::vector<int64_t> counts(40 * 40, 1);
  draw_class_iou(ConfusionMatrix(40, counts), names, dir.path / "iou40.png");
  EXPECT_EQ(read_chart(dir.path / "iou40.png").size(), class_iou_chart_size(40));
}

TEST(Report, MetricsCsvReadsTheColumnsByNameWithNan) {
  TempDir dir;
  const fs::path csv = dir.path / "metrics.csv";
  write_text(csv, std::string(kHeader) + "1,1.5,0.5,0.25,0.125,3,4,0,nan,0\n2,1.25,nan,nan,nan,3,4,0,nan,0\n");
  const auto rows = read_metrics_csv(csv);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].epoch, 1);
  EXPECT_DOUBLE_EQ(rows[0].train_loss, 1.5);
  EXPECT_DOUBLE_EQ(rows[0].global_acc, 0.5);
  EXPECT_DOUBLE_EQ(rows[0].class_avg_acc, 0.25);
  EXPECT_DOUBLE_EQ(rows[0].miou, 0.125);
  EXPECT_EQ(rows[1].epoch, 2);
  EXPECT_TRUE(std::isnan(rows[1].miou));
}

TEST(Report, TruncatedOrGarbledMetricsCsvIsAnErrorNamingTheFileAndLine) {
  TempDir dir;
  const fs::path csv = dir.path / "metrics.csv";
  write_text(csv, std::string(kHeader) + "1,1.5,0.5,0.25,0.125,3,4,0,nan,0\n2,1.2");
  std::string e = error_of([&] { read_metrics_csv(csv); });
  EXPECT_TRUE(contains(e, csv.string()) && contains(e, "line 3")) << e;
  write_text(csv, std::string(kHeader) + "1,abc,0.5,0.25,0.125,3,4,0,nan,0\n");
  e = error_of([&] { read_metrics_csv(csv); });
  EXPECT_TRUE(contains(e, csv.string()) && contains(e, "train_loss") && contains(e, "abc")) << e;
  write_text(csv, "\x89PNG\r\n\x1a\n garbage");
  e = error_of([&] { read_metrics_csv(csv); });
  EXPECT_TRUE(contains(e, csv.string())) << e;
  write_text(csv, "");
  e = error_of([&] { read_metrics_csv(csv); });
  EXPECT_TRUE(contains(e, csv.string()) && contains(e, "empty")) << e;
  e = error_of([&] { read_metrics_csv(dir.path / "absent.csv"); });
  EXPECT_TRUE(contains(e, "absent.csv")) << e;
}

TEST(Report, RunReportDrawsCurvesAndTheChartsOfEvalJsonInTheRun) {
  TempDir dir;
  write_text(dir.path / "metrics.csv", std::string(kHeader) + "1,1.5,0.5,0.25,0.125,3,4,0,nan,0\n2,1.25,0.6,0.3,0.2,3,4,0,nan,0\n");
  const std::vector<ClassInfo> classes = {{"road", {1, 2, 3}}, {"sidewalk", {4, 5, 6}}, {"sky", {7, 8, 9}}};
  write_text(dir.path / "val.json", metrics_json(Evaluation{three_classes(), BoundaryF1(3), {}}, classes).dump(2));
  write_text(dir.path / "config.json", "{\"epochs\": 2}");  // not an eval JSON: no charts
  const auto written = write_run_report(dir.path);
  ASSERT_EQ(written.size(), 3u);
  EXPECT_EQ(written[0], dir.path / "curves.png");
  EXPECT_EQ(written[1], dir.path / "val_confusion.png");
  EXPECT_EQ(written[2], dir.path / "val_class_iou.png");
  EXPECT_EQ(read_chart(written[0]).size(), cv::Size(kCurvesWidth, kCurvesHeight));
  EXPECT_EQ(read_chart(written[1]).size(), cv::Size(kConfusionWidth, kConfusionHeight));
  EXPECT_EQ(read_chart(written[2]).size(), class_iou_chart_size(3));
  EXPECT_FALSE(fs::exists(dir.path / "config_confusion.png"));
  // An atomic write's hidden temporary is passed over; a JSON cut short is named, not skipped.
  write_text(dir.path / ".test.tmp1.json", "{\"confus");
  EXPECT_EQ(write_run_report(dir.path).size(), 3u);
  write_text(dir.path / "test.json", "{\"confusion\": [[1, 2], [3");
  const std::string cut = error_of([&] { write_run_report(dir.path); });
  EXPECT_TRUE(contains(cut, (dir.path / "test.json").string()) && contains(cut, "not valid JSON")) << cut;
}

TEST(Report, CliWithoutMetricsCsvFailsWithOneLineNamingIt) {
  TempDir dir;
  const CliResult r = segnet_cli("report " + quote(dir.path), dir.path);
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  EXPECT_TRUE(contains(r.err, "segnet: error: ") && contains(r.err, (dir.path / "metrics.csv").string())) << r.err;
  write_text(dir.path / "metrics.csv", std::string(kHeader) + "1,1.5,0.5");
  const CliResult garbled = segnet_cli("report " + quote(dir.path), dir.path);
  EXPECT_NE(garbled.status, 0);
  EXPECT_EQ(line_count(garbled.err), 1u) << garbled.err;
  EXPECT_TRUE(contains(garbled.err, "metrics.csv") && contains(garbled.err, "line 2")) << garbled.err;
  EXPECT_FALSE(fs::exists(dir.path / "curves.png"));
}

// The real program: training keeps curves.png, eval --json draws its charts beside the JSON, report
// draws them again.
TEST(ReportCli, TrainAndEvalDrawChartsAndReportRedrawsThem) {
  TempDir dir;
  const fs::path data = dir.path / "data", run = dir.path / "run";
  ASSERT_EQ(segnet_cli("synth --out " + quote(data) + " --count 6 --size 24x32", dir.path).status, 0);
  const CliResult t = segnet_cli("train --data " + quote(data) + " --model segnet-basic --size 24x32 --epochs 2 --batch 2 --out " +
                                  quote(run),
                              dir.path);
  ASSERT_EQ(t.status, 0) << t.err;
  const cv::Mat curves = read_chart(run / "curves.png");
  ASSERT_FALSE(curves.empty());
  EXPECT_EQ(curves.size(), cv::Size(kCurvesWidth, kCurvesHeight));
  EXPECT_GT(pixels_of(curves, kLossRgb), 100);
  EXPECT_GT(pixels_of(curves, kMiouRgb), 20);

  const CliResult e = segnet_cli("eval --checkpoint " + quote(run / "best.pt") + " --data " + quote(data) +
                                  " --list val.txt --json " + quote(run / "val.json"),
                              dir.path);
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_TRUE(contains(e.out, "val_confusion.png") && contains(e.out, "val_class_iou.png")) << e.out;
  EXPECT_EQ(read_chart(run / "val_confusion.png").size(), cv::Size(kConfusionWidth, kConfusionHeight));
  const cv::Mat iou = read_chart(run / "val_class_iou.png");
  ASSERT_FALSE(iou.empty());
  const auto j = nlohmann::json::parse(slurp(run / "val.json"));
  EXPECT_EQ(iou.size(), class_iou_chart_size(static_cast<int64_t>(j["per_class"].size())));

  fs::remove(run / "curves.png");
  fs::remove(run / "val_confusion.png");
  const CliResult r = segnet_cli("report " + quote(run), dir.path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(run / "curves.png"));
  EXPECT_TRUE(fs::exists(run / "val_confusion.png"));
  EXPECT_TRUE(contains(r.out, "curves.png")) << r.out;
}

// Without PLplot's Cairo driver (PLPLOT_DRV_DIR pointing at a folder with only its memory driver, as
// a machine without plplot-driver-cairo has), train and eval --json stop with a one-line error naming
// the chart before any work, and write nothing.
TEST(ReportCli, WithoutTheChartDriverTrainAndEvalStopBeforeTheirWork) {
  TempDir dir;
  const fs::path data = dir.path / "data", run = dir.path / "run", drivers = dir.path / "drivers";
  ASSERT_EQ(segnet_cli("synth --out " + quote(data) + " --count 4 --size 24x32", dir.path).status, 0);
  const std::string train = "train --data " + quote(data) + " --model segnet-basic --size 24x32 --epochs 1 --batch 2 --out ";
  ASSERT_EQ(segnet_cli(train + quote(run), dir.path).status, 0);
  fs::create_directories(drivers);
  for (const char* file : {"mem.driver_info", "mem.so"}) fs::create_symlink(fs::path(SEGNET_PLPLOT_DRIVERS) / file, drivers / file);
  ASSERT_EQ(::setenv("PLPLOT_DRV_DIR", drivers.c_str(), 1), 0);
  const CliResult t = segnet_cli(train + quote(dir.path / "run2"), dir.path);
  const CliResult e = segnet_cli("eval --checkpoint " + quote(run / "last.pt") + " --data " + quote(data) +
                                     " --list val.txt --json " + quote(run / "val.json"),
                                 dir.path);
  ::unsetenv("PLPLOT_DRV_DIR");
  for (const auto& [r, chart] : {std::pair{t, dir.path / "run2" / "curves.png"}, std::pair{e, run / "val_confusion.png"}}) {
    EXPECT_NE(r.status, 0);
    EXPECT_EQ(line_count(r.err), 1u) << r.err;
    EXPECT_TRUE(contains(r.err, chart.string()) && contains(r.err, "plplot-driver-cairo")) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir.path / "run2" / "config.json"));
  EXPECT_FALSE(fs::exists(run / "val.json"));
  EXPECT_FALSE(contains(e.out, "scoring")) << e.out;
}

#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/evaluate.h>
#include <segnet/metrics.h>

#include "python.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <sstream>

using namespace segnet;
using segnet::test::python_has;
using segnet::test::python_list;
using segnet::test::python_output;

namespace {

// truth:      0 0 0 1 1 2 void
// prediction: 0 0 1 1 2 2 0
// confusion (rows truth): [2 1 0] [0 1 1] [0 0 1]
ConfusionMatrix hand_example() {
  ConfusionMatrix m(3);
  m.add(torch::tensor({0, 0, 1, 1, 2, 2, 0}), torch::tensor({0, 0, 0, 1, 1, 2, int(kIgnoreLabel)}));
  return m;
}

}  // namespace

TEST(ConfusionMatrix, MatchesHandComputedMetrics) {
  const ConfusionMatrix m = hand_example();
  EXPECT_EQ(m.count(0, 0), 2);
  EXPECT_EQ(m.count(0, 1), 1);
  EXPECT_EQ(m.count(1, 2), 1);
  EXPECT_EQ(m.count(2, 2), 1);
  EXPECT_DOUBLE_EQ(m.global_accuracy(), 4.0 / 6.0);
  const auto acc = m.class_accuracy();
  EXPECT_DOUBLE_EQ(acc[0], 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(acc[1], 1.0 / 2.0);
  EXPECT_DOUBLE_EQ(acc[2], 1.0);
  EXPECT_DOUBLE_EQ(m.class_average_accuracy(), (2.0 / 3.0 + 0.5 + 1.0) / 3.0);
  // IoU: class 0: 2/(3+2-2)=2/3; class 1: 1/(2+2-1)=1/3; class 2: 1/(1+2-1)=1/2.
  const auto iou = m.class_iou();
  EXPECT_DOUBLE_EQ(iou[0], 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(iou[1], 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(iou[2], 0.5);
  EXPECT_DOUBLE_EQ(m.mean_iou(), (2.0 / 3.0 + 1.0 / 3.0 + 0.5) / 3.0);
}

// The hand example: truth pixels per class 3, 2, 1; predicted 2, 2, 2; true positives 2, 1, 1.
//   Dice 2TP / (truth + predicted):  4/5, 2/4, 2/3
//   precision TP / predicted:        2/2, 1/2, 1/2;  recall (class accuracy) 2/3, 1/2, 1
//   F-score 2PR / (P + R):           (4/3) / (5/3) = 4/5, 0.5 / 1 = 1/2, 1 / 1.5 = 2/3 (the Dice scores)
//   frequency-weighted IoU:          3/6 * 2/3 + 2/6 * 1/3 + 1/6 * 1/2 = 19/36
TEST(ConfusionMatrix, MatchesHandComputedDiceFscoreAndFrequencyWeightedIou) {
  const ConfusionMatrix m = hand_example();
  const std::vector<double> dice = {4.0 / 5.0, 0.5, 2.0 / 3.0};
  const std::vector<double> precision = {1.0, 0.5, 0.5};
  for (size_t c = 0; c < 3; ++c) {
    EXPECT_DOUBLE_EQ(m.class_dice()[c], dice[c]) << c;
    EXPECT_DOUBLE_EQ(m.class_precision()[c], precision[c]) << c;
    EXPECT_DOUBLE_EQ(m.class_fscore()[c], dice[c]) << c;
  }
  EXPECT_DOUBLE_EQ(m.mean_dice(), (4.0 / 5.0 + 0.5 + 2.0 / 3.0) / 3.0);
  EXPECT_DOUBLE_EQ(m.mean_fscore(), m.mean_dice());
  EXPECT_DOUBLE_EQ(m.frequency_weighted_iou(), 19.0 / 36.0);

  const auto j = metrics_json(m, {{"a", {}}, {"b", {}}, {"c", {}}});
  EXPECT_DOUBLE_EQ(j["mdice"].get<double>(), m.mean_dice());
  EXPECT_DOUBLE_EQ(j["mfscore"].get<double>(), m.mean_fscore());
  EXPECT_DOUBLE_EQ(j["fwiou"].get<double>(), 19.0 / 36.0);
  EXPECT_DOUBLE_EQ(j["per_class"][0]["dice"].get<double>(), 4.0 / 5.0);
  EXPECT_DOUBLE_EQ(j["per_class"][1]["precision"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["per_class"][2]["fscore"].get<double>(), 2.0 / 3.0);
}

// truth:      0 0 1 2 3
// prediction: 0 0 2 1 0     (class 4 neither true nor predicted)
//   class 0: TP 2, truth 2, predicted 3: Dice 4/5, P 2/3, R 1, F 4/5, IoU 2/3
//   classes 1, 2: TP 0, truth 1, predicted 1: Dice 0, P = R = 0, F 0/0 -> undefined
//   class 3: TP 0, truth 1, never predicted: Dice 0, P undefined, F undefined
//   class 4: everything undefined
// mDice (4/5 + 0 + 0 + 0) / 4; mean F-score over class 0 alone, as MMSegmentation's nanmean;
// FWIoU 2/5 * 2/3 (the other classes' IoU is 0).
TEST(ConfusionMatrix, FscoreLeavesOutClassesWithoutTruePositivesAsMMSegmentationDoes) {
  ConfusionMatrix m(5);
  m.add(torch::tensor({0, 0, 2, 1, 0}), torch::tensor({0, 0, 1, 2, 3}));
  const auto dice = m.class_dice(), fscore = m.class_fscore(), precision = m.class_precision();
  EXPECT_DOUBLE_EQ(dice[0], 4.0 / 5.0);
  EXPECT_DOUBLE_EQ(fscore[0], 4.0 / 5.0);
  for (int c : {1, 2, 3}) {
    EXPECT_EQ(dice[c], 0.0) << c;
    EXPECT_TRUE(std::isnan(fscore[c])) << c;
  }
  EXPECT_EQ(precision[1], 0.0);
  EXPECT_TRUE(std::isnan(precision[3]));
  EXPECT_TRUE(std::isnan(dice[4]));
  EXPECT_DOUBLE_EQ(m.mean_dice(), 0.2);
  EXPECT_DOUBLE_EQ(m.mean_fscore(), 0.8);
  EXPECT_DOUBLE_EQ(m.frequency_weighted_iou(), 2.0 / 5.0 * 2.0 / 3.0);
  const auto j = metrics_json(m, std::vector<ClassInfo>(5));
  EXPECT_TRUE(j["per_class"][3]["fscore"].is_null());
  EXPECT_TRUE(j["per_class"][4]["dice"].is_null());
}

// The same metrics computed independently by numpy (MMSegmentation's formulas and nanmean) on a
// random matrix with a class never true (5) and one never predicted (4).
TEST(ConfusionMatrix, MatchesNumpyOnARandomMatrix) {
  if (!python_has("numpy")) GTEST_SKIP() << "/usr/bin/python3 has no numpy: no independent reference";
  torch::manual_seed(3);
  ConfusionMatrix m(6);
  m.add(torch::randint(4, {500}), torch::randint(5, {500}));
  m.add(torch::full({20}, 5), torch::randint(4, {20}));
  const std::string script =
      "import numpy as np\n"
      "m = np.array(" + python_list(m.counts()) + ", dtype=float).reshape(6, 6)\n"
      "tp, truth, pred = np.diag(m), m.sum(1), m.sum(0)\n"
      "np.seterr(all=\"ignore\")\n"
      "iou = tp / (truth + pred - tp)\n"
      "p, r = tp / pred, tp / truth\n"
      "values = [np.nanmean(2 * tp / (truth + pred)), np.nanmean(2 * p * r / (p + r)), np.nansum(truth / m.sum() * iou)]\n"
      "print(\" \".join(repr(float(v)) for v in values))\n";
  const auto out = python_output(script);
  ASSERT_TRUE(out) << script;
  std::istringstream values(*out);
  double mdice = 0, mfscore = 0, fwiou = 0;
  ASSERT_TRUE(values >> mdice >> mfscore >> fwiou) << *out;
  EXPECT_NEAR(m.mean_dice(), mdice, 1e-12);
  EXPECT_NEAR(m.mean_fscore(), mfscore, 1e-12);
  EXPECT_NEAR(m.frequency_weighted_iou(), fwiou, 1e-12);
  EXPECT_TRUE(std::isnan(m.class_fscore()[4]));  // the case numpy must agree on is there
}

TEST(ConfusionMatrix, ClassAbsentFromTruthAndPredictionIsLeftOutOfTheMeans) {
  ConfusionMatrix m(3);
  m.add(torch::tensor({0, 1, 1}), torch::tensor({0, 1, 0}));
  EXPECT_TRUE(std::isnan(m.class_iou()[2]));
  EXPECT_TRUE(std::isnan(m.class_accuracy()[2]));
  EXPECT_DOUBLE_EQ(m.mean_iou(), (0.5 + 0.5) / 2.0);
  EXPECT_DOUBLE_EQ(m.class_average_accuracy(), (0.5 + 1.0) / 2.0);
}

TEST(ConfusionMatrix, MergeAddsCounts) {
  ConfusionMatrix a(2), b(2);
  a.add(torch::tensor({0, 1}), torch::tensor({0, 0}));
  b.add(torch::tensor({1}), torch::tensor({1}));
  a.merge(b);
  EXPECT_EQ(a.count(0, 1), 1);
  EXPECT_EQ(a.count(1, 1), 1);
  EXPECT_DOUBLE_EQ(a.global_accuracy(), 2.0 / 3.0);
}

// c0: 100 px in images of 400 px (freq .25); c1: 20 in 200 (.1); c2: 300 in 400 (.75); c3 never seen.
// Median of the seen frequencies = .25.
TEST(MedianFrequencyWeights, MatchHandComputedExample) {
  const auto w = median_frequency_weights({100, 20, 300, 0}, {400, 200, 400, 0});
  ASSERT_EQ(w.size(), 4u);
  EXPECT_FLOAT_EQ(w[0], 1.0f);
  EXPECT_FLOAT_EQ(w[1], 2.5f);
  EXPECT_FLOAT_EQ(w[2], 0.25f / 0.75f);
  EXPECT_FLOAT_EQ(w[3], 0.0f);  // never seen: no weight
}

TEST(MedianFrequencyWeights, EvenCountUsesMeanOfMiddleFrequencies) {
  const auto w = median_frequency_weights({10, 20, 30, 40}, {100, 100, 100, 100});
  EXPECT_FLOAT_EQ(w[0], 0.25f / 0.1f);
  EXPECT_FLOAT_EQ(w[3], 0.25f / 0.4f);
}

TEST(ClassWeightsFile, ReadsTheWeightsAndRejectsWhatIsNotAWeight) {
  const auto path = std::filesystem::temp_directory_path() / ("weights_test_" + std::to_string(::getpid()));
  std::ofstream(path) << "0.5, 1\n2.25\n";
  EXPECT_EQ(read_class_weights(path), (std::vector<float>{0.5f, 1.f, 2.25f}));
  std::ofstream(path) << "1 x 2\n";
  EXPECT_THROW(read_class_weights(path), Error);
  std::ofstream(path) << "1 -2\n";
  EXPECT_THROW(read_class_weights(path), Error);
  std::ofstream(path) << "\n";
  EXPECT_THROW(read_class_weights(path), Error);
  std::filesystem::remove(path);
}

// truth:      0 0 1 1 1 void
// prediction: 0 1 1 1 0 1    -> TN 1, FP 1, TP 2, FN 1
TEST(BinaryMetrics, MatchHandComputedExample) {
  ConfusionMatrix m(2);
  m.add(torch::tensor({0, 1, 1, 1, 0, 1}), torch::tensor({0, 0, 1, 1, 1, int(kIgnoreLabel)}));
  const auto j = binary_metrics_json(m);
  EXPECT_DOUBLE_EQ(j["iou"].get<double>(), 2.0 / 4.0);
  EXPECT_DOUBLE_EQ(j["dice"].get<double>(), 4.0 / 6.0);
  EXPECT_DOUBLE_EQ(j["precision"].get<double>(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(j["recall"].get<double>(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(j["pixel_acc"].get<double>(), 3.0 / 5.0);
  // Both classes: background TP 1 of 2 true, 2 predicted: IoU 1/3, Dice 2/4.
  EXPECT_DOUBLE_EQ(j["miou"].get<double>(), (1.0 / 3.0 + 2.0 / 4.0) / 2);
  EXPECT_DOUBLE_EQ(j["mdice"].get<double>(), (2.0 / 4.0 + 4.0 / 6.0) / 2);
  EXPECT_DOUBLE_EQ(j["fwiou"].get<double>(), 2.0 / 5.0 * 1.0 / 3.0 + 3.0 / 5.0 * 2.0 / 4.0);
  EXPECT_EQ(j["confusion"][1][0].get<int64_t>(), 1);
}

TEST(BinaryMetrics, UndefinedWithoutForegroundAreNull) {
  ConfusionMatrix m(2);
  m.add(torch::tensor({0, 0}), torch::tensor({0, 0}));
  const auto j = binary_metrics_json(m);
  EXPECT_TRUE(j["iou"].is_null());
  EXPECT_TRUE(j["precision"].is_null());
  EXPECT_DOUBLE_EQ(j["pixel_acc"].get<double>(), 1.0);
}

TEST(PredictiveEntropy, IsZeroWhenCertainAndLogCWhenUniform) {
  const auto probs = torch::stack({torch::tensor({{1.0, 0.25}}), torch::tensor({{0.0, 0.25}}),
                                   torch::tensor({{0.0, 0.25}}), torch::tensor({{0.0, 0.25}})});  // 4 x 1 x 2
  const auto h = predictive_entropy(probs);
  EXPECT_NEAR(h[0][0].item<double>(), 0.0, 1e-9);
  EXPECT_NEAR(h[0][1].item<double>(), std::log(4.0), 1e-6);
}

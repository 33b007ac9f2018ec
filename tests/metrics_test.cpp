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

  const auto j = metrics_json(Evaluation{m, BoundaryF1(3), {}}, {{"a", {}}, {"b", {}}, {"c", {}}});
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
  const auto j = metrics_json(Evaluation{m, BoundaryF1(5), {}}, std::vector<ClassInfo>(5));
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
  const auto j = binary_metrics_json(Evaluation{m, BoundaryF1(2), {}});
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
  const auto j = binary_metrics_json(Evaluation{m, BoundaryF1(2), {}});
  EXPECT_TRUE(j["iou"].is_null());
  EXPECT_TRUE(j["precision"].is_null());
  EXPECT_DOUBLE_EQ(j["pixel_acc"].get<double>(), 1.0);
}

namespace {

// 30 x 40 images, so that a tolerance of 0.05 x the diagonal (50) is 2.5 pixels.
constexpr int64_t kRows = 30, kCols = 40;
constexpr double kTolerance = 0.05;

// Class 0 left of column `edge`, class 1 from it on.
torch::Tensor two_stripes(int64_t edge) {
  auto ids = torch::zeros({kRows, kCols}, torch::kLong);
  ids.slice(1, edge).fill_(1);
  return ids;
}

}  // namespace

// Each class's boundary is the column beside the edge on its side (the image's edge is none), so a
// prediction whose edge is off by 2 columns has every boundary pixel within 2.5 pixels of a true one
// (F1 1 for both classes) and one off by 3 has none (F1 0).
// A class filling the image in truth and prediction has no boundary in either: F1 1.
// Void: the truth is class 0 left of column 20 and void right of it. Predicted class 0 left of 20,
// class 1 right, and a square of class 0 inside the void: the square's boundary is on void truth
// and not scored, so predicted and true class-0 boundaries are both column 19: F1 1 (class 1 is not in
// the truth, so not scored). A prediction of class 0 everywhere has no class-0 boundary where the
// truth has one: F1 0.
TEST(BoundaryF1, MatchesHandComputedScoresForShiftedEdgesFilledImagesAndVoid) {
  BoundaryF1 bf(2, kTolerance);
  EXPECT_DOUBLE_EQ(bf.add(two_stripes(22), two_stripes(20)), 1.0);
  EXPECT_DOUBLE_EQ(bf.add(two_stripes(17), two_stripes(20)), 0.0);
  EXPECT_DOUBLE_EQ(bf.add(two_stripes(23), two_stripes(20)), 0.0);
  EXPECT_DOUBLE_EQ(bf.add(two_stripes(kCols), two_stripes(kCols)), 1.0);  // all class 0

  auto void_right = two_stripes(20);
  void_right.slice(1, 20).fill_(int64_t(kIgnoreLabel));
  auto square_in_void = two_stripes(20);
  square_in_void.slice(0, 10, 15).slice(1, 30, 35).fill_(0);
  EXPECT_DOUBLE_EQ(bf.add(square_in_void, void_right), 1.0);
  EXPECT_DOUBLE_EQ(bf.add(two_stripes(kCols), void_right), 0.0);
  EXPECT_TRUE(std::isnan(bf.add(two_stripes(20), torch::full({kRows, kCols}, int64_t(kIgnoreLabel)))));

  // Images: 1, 0, 0, 1, 1, 0 (the all-void one is not counted). Class 0 is in all six truths;
  // class 1 in the first three.
  EXPECT_DOUBLE_EQ(bf.mean(), 3.0 / 6.0);
  EXPECT_DOUBLE_EQ(bf.class_scores()[0], 3.0 / 6.0);
  EXPECT_DOUBLE_EQ(bf.class_scores()[1], 1.0 / 3.0);
  EXPECT_TRUE(std::isnan(BoundaryF1(3).class_scores()[2]));
  EXPECT_TRUE(std::isnan(BoundaryF1(3).mean()));
}

// The same definition computed independently by numpy and scipy's exact Euclidean distance
// transform (ours is OpenCV's), on random blobs of four classes with void, predictions that move
// some of their edges. 2.88 pixels of tolerance: no distance sqrt(n) lies within float error of it.
TEST(BoundaryF1, MatchesScipyOnRandomLabelMaps) {
  if (!python_has("scipy.ndimage")) GTEST_SKIP() << "/usr/bin/python3 has no scipy: no independent reference";
  torch::manual_seed(5);
  constexpr int64_t rows = 32, cols = 48, classes = 4;
  BoundaryF1 bf(classes, kTolerance);
  std::vector<int64_t> truths, predictions;
  std::vector<double> image_scores;
  for (int i = 0; i < 4; ++i) {
    const auto blobs = [&](int64_t cell) {  // random classes on a coarse grid, scaled up
      auto coarse = torch::randint(classes, {1, 1, rows / cell, cols / cell}).to(torch::kFloat);
      return torch::upsample_nearest2d(coarse, {rows, cols}).reshape({rows, cols}).to(torch::kLong);
    };
    auto truth = blobs(8);
    truth.masked_fill_(blobs(16) == 0, int64_t(kIgnoreLabel));  // about a quarter void
    auto prediction = torch::where(torch::rand({rows, cols}) < 0.9, truth.roll(i % 3, 1), blobs(4));
    prediction.masked_fill_(prediction == int64_t(kIgnoreLabel), 0);
    image_scores.push_back(bf.add(prediction, truth));
    const auto t = truth.contiguous(), p = prediction.contiguous();
    truths.insert(truths.end(), t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
    predictions.insert(predictions.end(), p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel());
  }
  const std::string script =
      "import numpy as np\n"
      "from scipy import ndimage\n"
      "shape = (4, " + std::to_string(rows) + ", " + std::to_string(cols) + ")\n"
      "truths = np.array(" + python_list(truths) + ").reshape(shape)\n"
      "preds = np.array(" + python_list(predictions) + ").reshape(shape)\n"
      "tol = " + std::to_string(kTolerance) + " * np.hypot(shape[1], shape[2])\n"
      "def boundary(m):\n"
      "    p = np.pad(m, 1, mode=\"edge\")\n"
      "    return m & ~(p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:])\n"
      "def within(points, targets):\n"
      "    return np.count_nonzero(points & (ndimage.distance_transform_edt(~targets) <= tol))\n"
      "images, per_class = [], [[] for _ in range(" + std::to_string(classes) + ")]\n"
      "for t, p in zip(truths, preds):\n"
      "    scores = []\n"
      "    for c in range(" + std::to_string(classes) + "):\n"
      "        if not (t == c).any(): continue\n"
      "        tb, pb = boundary(t == c), boundary(p == c) & (t != 255)\n"
      "        nt, np_ = tb.sum(), pb.sum()\n"
      "        if nt == 0 or np_ == 0: f = 1.0 if nt == np_ else 0.0\n"
      "        else:\n"
      "            pr, rc = within(pb, tb) / np_, within(tb, pb) / nt\n"
      "            f = 2 * pr * rc / (pr + rc) if pr + rc > 0 else 0.0\n"
      "        scores.append(f); per_class[c].append(f)\n"
      "    images.append(np.mean(scores))\n"
      "print(\" \".join(repr(float(v)) for v in images + [np.mean(images)] + [np.mean(s) for s in per_class]))\n";
  const auto out = python_output(script);
  ASSERT_TRUE(out) << script;
  std::istringstream values(*out);
  for (double expected : image_scores) {
    double v = 0;
    ASSERT_TRUE(values >> v) << *out;
    EXPECT_NEAR(expected, v, 1e-12);
  }
  double mean = 0;
  ASSERT_TRUE(values >> mean) << *out;
  EXPECT_NEAR(bf.mean(), mean, 1e-12);
  for (int64_t c = 0; c < classes; ++c) {
    double v = 0;
    ASSERT_TRUE(values >> v) << *out;
    EXPECT_NEAR(bf.class_scores()[c], v, 1e-12) << c;
  }
  // Not a trivial agreement: the predictions are neither perfect nor hopeless.
  EXPECT_GT(bf.mean(), 0.2);
  EXPECT_LT(bf.mean(), 0.95);
}

TEST(PredictiveEntropy, IsZeroWhenCertainAndLogCWhenUniform) {
  const auto probs = torch::stack({torch::tensor({{1.0, 0.25}}), torch::tensor({{0.0, 0.25}}),
                                   torch::tensor({{0.0, 0.25}}), torch::tensor({{0.0, 0.25}})});  // 4 x 1 x 2
  const auto h = predictive_entropy(probs);
  EXPECT_NEAR(h[0][0].item<double>(), 0.0, 1e-9);
  EXPECT_NEAR(h[0][1].item<double>(), std::log(4.0), 1e-6);
}

#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/evaluate.h>
#include <segnet/metrics.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>

using namespace segnet;

// truth:      0 0 0 1 1 2 void
// prediction: 0 0 1 1 2 2 0
// confusion (rows truth): [2 1 0] [0 1 1] [0 0 1]
TEST(ConfusionMatrix, MatchesHandComputedMetrics) {
  ConfusionMatrix m(3);
  m.add(torch::tensor({0, 0, 1, 1, 2, 2, 0}), torch::tensor({0, 0, 0, 1, 1, 2, int(kIgnoreLabel)}));
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

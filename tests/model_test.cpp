#include <segnet/error.h>
#include <segnet/model.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

using namespace segnet;

TEST(SegNet, OutputsClassLogitsAtTheInputSizeForOddSizes) {
  torch::NoGradGuard no_grad;
  for (const std::string name : {"segnet-basic", "segnet"}) {
    SegNet model(SegNetOptions(name, 7));
    model->eval();
    const auto out = model->forward(torch::randn({2, 3, 45, 61}));
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 7, 45, 61})) << name;
  }
  SegNet basic(SegNetOptions("segnet-basic", 3));
  basic->eval();
  EXPECT_EQ(basic->forward(torch::randn({1, 3, 97, 131})).sizes(), (std::vector<int64_t>{1, 3, 97, 131}));
}

TEST(SegNet, ParameterCountsMatchThePaper) {
  SegNet segnet(SegNetOptions("segnet", 11));
  SegNet basic(SegNetOptions("segnet-basic", 11));
  EXPECT_NEAR(parameter_count(*segnet), 29.4e6, 0.01 * 29.4e6);
  // Exact counts, from the layer plan by hand (conv weights + biases, BN scale + shift) and from the
  // PyTorch reference in bench/. SegNet-Basic's "about 1.4 M" is that figure rounded (1.2% below).
  EXPECT_EQ(parameter_count(*segnet), 29449355);
  const int64_t basic_expected = (3 * 64 * 49 + 64 + 128) + 3 * (64 * 64 * 49 + 64 + 128) +
                                 4 * (64 * 64 * 49 + 64 + 128) + (64 * 11 + 11);
  EXPECT_EQ(parameter_count(*basic), basic_expected);
}

TEST(Architecture, RejectsUnknownModelName) {
  EXPECT_THROW(architecture("unet"), Error);
  EXPECT_THROW(SegNet(SegNetOptions("segnet", 0)), Error);
}

TEST(SegNet, MultiplyAddsMatchTheConvolutionsAtOddSizes) {
  // Counted independently by bench/reference.py from a traced forward pass.
  EXPECT_EQ(multiply_adds(SegNetOptions("segnet", 11), 360, 480), 106712432640);
  EXPECT_EQ(multiply_adds(SegNetOptions("segnet-basic", 11), 360, 480), 59188838400);
  // Ceil-mode stage sizes: 17x33 -> 9x17 -> 5x9 -> 3x5.
  const int64_t full = 17 * 33, s1 = 9 * 17, s2 = 5 * 9, s3 = 3 * 5;
  const int64_t per_px = 64 * 64 * 49;
  EXPECT_EQ(multiply_adds(SegNetOptions("segnet-basic", 2), 17, 33),
            full * 3 * 64 * 49 + (s1 + s2 + s3) * per_px + (s3 + s2 + s1 + full) * per_px + full * 64 * 2);
}

TEST(SegNet, FoldedBatchNormGivesTheSameOutput) {
  torch::manual_seed(4);
  SegNet model(SegNetOptions("segnet-basic", 3));
  model->train();
  model->forward(torch::randn({2, 3, 20, 24}) * 2 + 1);  // non-trivial running statistics
  model->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 3, 20, 24});
  const auto before = model->forward(x);
  model->fold_batch_norm();
  EXPECT_TRUE(torch::allclose(model->forward(x), before, 1e-4, 1e-4));
}

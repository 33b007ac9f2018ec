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

#include <segnet/error.h>
#include <segnet/model.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <tuple>

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
  EXPECT_THROW(architecture("bayesian-bayesian-segnet"), Error);
  EXPECT_THROW(SegNet(SegNetOptions("segnet", 0)), Error);
  try {
    architecture("unet");
    ADD_FAILURE() << "unknown model accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bayesian-segnet-basic"), std::string::npos) << e.what();
  }
}

TEST(Architecture, BayesianModelsAreTheSameLayersWithDropoutInTheDeepestStages) {
  for (const auto& [bayesian, base, stages] :
       std::vector<std::tuple<std::string, std::string, int64_t>>{{"bayesian-segnet", "segnet", 3},
                                                                  {"bayesian-segnet-basic", "segnet-basic", 2}}) {
    const Architecture arch = architecture(bayesian);
    EXPECT_EQ(arch.name, bayesian);
    EXPECT_EQ(arch.dropout_stages, stages);
    EXPECT_EQ(arch.encoder, architecture(base).encoder);
    EXPECT_EQ(arch.decoder, architecture(base).decoder);
    EXPECT_EQ(architecture(base).dropout_stages, 0);
  }
  // As in the authors' Caffe model: after the deepest encoder pools and after the deepest decoder stages.
  SegNet model(SegNetOptions("bayesian-segnet-basic", 3));
  std::vector<std::string> dropouts;
  for (const auto& item : model->named_modules())
    if (item.value()->as<McDropoutImpl>()) dropouts.push_back(item.key());
  std::sort(dropouts.begin(), dropouts.end());
  EXPECT_EQ(dropouts, (std::vector<std::string>{"decoder3.dropout", "decoder4.dropout", "encoder3.dropout",
                                                "encoder4.dropout"}));
}

TEST(SegNet, EveryModelAndDecoderOutputsLogitsAtOddSizes) {
  torch::NoGradGuard no_grad;
  for (const auto& name : model_names()) {
    const bool basic = architecture(name).encoder.size() == 4;
    const int64_t height = basic ? 45 : 37, width = basic ? 61 : 45;  // SegNet is slow: keep it small
    const std::vector<int64_t> dilation = basic ? std::vector<int64_t>{1, 1, 2, 4} : std::vector<int64_t>{1, 1, 1, 2, 4};
    // Dilation and dropout touch different layers: dilating only the plain models covers each decoder
    // both ways in both families at half the cost.
    const bool dilated = architecture(name).dropout_stages == 0;
    for (const auto& decoder : decoder_names()) {
      SegNet model(SegNetOptions(name, 5).decoder(decoder).dilation(dilated ? dilation : std::vector<int64_t>{}));
      model->eval();
      EXPECT_EQ(model->forward(torch::randn({1, 3, height, width})).sizes(), (std::vector<int64_t>{1, 5, height, width}))
          << name << " " << decoder;
    }
  }
}

TEST(SegNet, RejectsBadDecoderAndDilation) {
  EXPECT_THROW(SegNet(SegNetOptions("segnet-basic", 3).decoder("nearest")), Error);
  EXPECT_THROW(multiply_adds(SegNetOptions("segnet-basic", 3).decoder("nearest"), 32, 32), Error);
  EXPECT_THROW(SegNet(SegNetOptions("segnet-basic", 3).dilation({1, 2, 4})), Error);
  EXPECT_THROW(SegNet(SegNetOptions("segnet", 3).dilation({1, 1, 1, 2})), Error);
  EXPECT_THROW(SegNet(SegNetOptions("segnet-basic", 3).dilation({1, 0, 1, 1})), Error);
  EXPECT_THROW(SegNet(SegNetOptions("segnet-basic", 3).dilation({1, 1, -2, 1})), Error);
  try {
    SegNet(SegNetOptions("segnet", 3).dilation({1, 2}));
    ADD_FAILURE() << "two dilation values for five stages were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("5 dilation values"), std::string::npos) << e.what();
  }
  try {
    SegNet(SegNetOptions("segnet", 3).decoder("nearest"));
    ADD_FAILURE() << "unknown decoder accepted";
  } catch (const Error& e) {
    for (const auto& decoder : decoder_names())
      EXPECT_NE(std::string(e.what()).find(decoder), std::string::npos) << e.what();
  }
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

TEST(SegNet, MultiplyAddsCountTransposedConvolutionsOnly) {
  // Ceil-mode stage sizes 17x33 -> 9x17 -> 5x9 -> 3x5, pooled to 2x3: the decoders' inputs, deepest first,
  // are 2x3, 3x5, 5x9 and 9x17, and a 2x2 transposed convolution does in * out * 4 per input pixel.
  const SegNetOptions basic("segnet-basic", 2);
  const int64_t indices = multiply_adds(basic, 17, 33);
  EXPECT_EQ(multiply_adds(SegNetOptions(basic).decoder("transposed"), 17, 33),
            indices + (2 * 3 + 3 * 5 + 5 * 9 + 9 * 17) * 64 * 64 * 4);
  EXPECT_EQ(multiply_adds(SegNetOptions(basic).decoder("bilinear"), 17, 33), indices);
  EXPECT_EQ(multiply_adds(SegNetOptions(basic).dilation({1, 1, 2, 4}), 17, 33), indices);
  EXPECT_EQ(multiply_adds(SegNetOptions("bayesian-segnet-basic", 2), 17, 33), indices);
  // SegNet at 360x480: decoder inputs 12x15 (512 channels), 23x30 (512), 45x60 (256), 90x120 (128), 180x240 (64).
  EXPECT_EQ(multiply_adds(SegNetOptions("segnet", 11).decoder("transposed"), 360, 480),
            106712432640 + int64_t{4} * ((12 * 15 + 23 * 30) * 512 * 512 + 45 * 60 * 256 * 256 +
                                         90 * 120 * 128 * 128 + 180 * 240 * 64 * 64));
}

TEST(SegNet, VariantsHaveTheParametersOfTheirLayers) {
  const int64_t segnet = 29449355;
  EXPECT_EQ(parameter_count(*SegNet(SegNetOptions("bayesian-segnet", 11))), segnet);  // dropout learns nothing
  // A 2x2 transposed convolution per decoder stage, in -> in channels: in * in * 4 weights + in biases.
  int64_t upconvs = 0;
  for (int64_t in : {512, 512, 256, 128, 64}) upconvs += in * in * 4 + in;
  EXPECT_EQ(parameter_count(*SegNet(SegNetOptions("segnet", 11).decoder("transposed"))), segnet + upconvs);
  const int64_t basic = parameter_count(*SegNet(SegNetOptions("segnet-basic", 11)));
  EXPECT_EQ(parameter_count(*SegNet(SegNetOptions("bayesian-segnet-basic", 11))), basic);
  EXPECT_EQ(parameter_count(*SegNet(SegNetOptions("segnet-basic", 11).decoder("bilinear"))), basic);
  EXPECT_EQ(parameter_count(*SegNet(SegNetOptions("segnet-basic", 11).dilation({1, 1, 2, 4}))), basic);
  EXPECT_EQ(parameter_count(*SegNet(SegNetOptions("segnet-basic", 11).decoder("transposed"))),
            basic + 4 * (64 * 64 * 4 + 64));
}

TEST(SegNet, McDropoutSamplesInEvalModeOnlyWhenAsked) {
  torch::manual_seed(6);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 3, 19, 23});
  SegNet bayesian(SegNetOptions("bayesian-segnet-basic", 3));
  EXPECT_TRUE(bayesian->has_dropout());
  bayesian->eval();
  const auto deterministic = bayesian->forward(x);
  EXPECT_TRUE(torch::equal(bayesian->forward(x), deterministic));
  bayesian->set_mc_dropout(true);
  const auto sample = bayesian->forward(x);
  EXPECT_FALSE(torch::equal(bayesian->forward(x), sample));
  EXPECT_FALSE(torch::equal(sample, deterministic));
  bayesian->set_mc_dropout(false);
  EXPECT_TRUE(torch::equal(bayesian->forward(x), deterministic));

  SegNet plain(SegNetOptions("segnet-basic", 3));
  EXPECT_FALSE(plain->has_dropout());
  plain->eval();
  const auto before = plain->forward(x);
  plain->set_mc_dropout(true);
  EXPECT_TRUE(torch::equal(plain->forward(x), before));
}

TEST(SegNet, FoldedBatchNormGivesTheSameOutput) {
  for (const auto& options : {SegNetOptions("segnet-basic", 3), SegNetOptions("segnet-basic", 3).decoder("transposed"),
                              SegNetOptions("segnet-basic", 3).decoder("bilinear"),
                              SegNetOptions("segnet-basic", 3).dilation({1, 1, 2, 4})}) {
    torch::manual_seed(4);
    SegNet model(options);
    model->train();
    model->forward(torch::randn({2, 3, 21, 25}) * 2 + 1);  // non-trivial running statistics
    model->eval();
    torch::NoGradGuard no_grad;
    const auto x = torch::randn({1, 3, 21, 25});
    const auto before = model->forward(x);
    model->fold_batch_norm();
    EXPECT_TRUE(torch::allclose(model->forward(x), before, 1e-4, 1e-4))
        << options.decoder() << " dilated: " << !options.dilation().empty();
  }
}

TEST(SegNet, ChannelsLastParametersGiveTheSameOutput) {
  torch::manual_seed(8);
  torch::NoGradGuard no_grad;
  for (const auto& decoder : decoder_names()) {
    SegNet model(SegNetOptions("segnet-basic", 3).decoder(decoder).dilation({1, 2, 1, 1}));
    model->eval();
    const auto x = torch::randn({1, 3, 21, 25});
    const auto before = model->forward(x);
    to_channels_last(*model);
    EXPECT_TRUE(torch::allclose(model->forward(x.contiguous(at::MemoryFormat::ChannelsLast)), before, 1e-4, 1e-4))
        << decoder;
  }
}

// Inference in bf16 (bf16 weights, as the Segmenter runs it) computes what fp32 does, for every
// decoder: LibTorch 1.13's own bf16 transposed convolution would return a wrongly sized output.
TEST(SegNet, Bf16WeightsGiveTheFp32OutputForEveryDecoder) {
  torch::manual_seed(9);
  torch::NoGradGuard no_grad;
  for (const auto& decoder : decoder_names()) {
    SegNet model(SegNetOptions("segnet-basic", 3).decoder(decoder));
    model->eval();
    const auto x = torch::randn({1, 3, 21, 25});
    const auto fp32 = model->forward(x);
    model->to(torch::kBFloat16);
    to_channels_last(*model);
    const auto bf16 = model->forward(x.to(torch::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast)).to(torch::kFloat);
    ASSERT_EQ(bf16.sizes(), fp32.sizes()) << decoder;
    EXPECT_LT((bf16 - fp32).abs().mean().item<double>(), 0.02 * fp32.abs().mean().item<double>()) << decoder;
  }
}

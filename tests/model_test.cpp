#include <segnet/error.h>
#include <segnet/model.h>
#include <segnet/runtime.h>

#include <gtest/gtest.h>

#include <functional>
#include <torch/torch.h>

#include <algorithm>
#include <tuple>

using namespace segnet;

TEST(SegNet, OutputsClassLogitsAtTheInputSizeForOddSizes) {
  torch::NoGradGuard no_grad;
  for (const Model name : {Model::SegNetBasic, Model::SegNet}) {
    SegNet model(SegNetOptions(name, 7));
    model->eval();
    const auto out = model->forward(torch::randn({2, 3, 45, 61}));
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 7, 45, 61})) << to_string(name);
  }
  SegNet basic(SegNetOptions(Model::SegNetBasic, 3));
  basic->eval();
  EXPECT_EQ(basic->forward(torch::randn({1, 3, 97, 131})).sizes(), (std::vector<int64_t>{1, 3, 97, 131}));
}

TEST(SegNet, ParameterCountsMatchThePaper) {
  SegNet segnet(SegNetOptions(Model::SegNet, 11));
  SegNet basic(SegNetOptions(Model::SegNetBasic, 11));
  EXPECT_NEAR(parameter_count(*segnet), 29.4e6, 0.01 * 29.4e6);
  // Exact counts, from the layer plan by hand (conv weights + biases, BN scale + shift) and from the
  // PyTorch reference in bench/. SegNet-Basic's "about 1.4 M" is that figure rounded (1.2% below).
  EXPECT_EQ(parameter_count(*segnet), 29449355);
  const int64_t basic_expected = (3 * 64 * 49 + 64 + 128) + 3 * (64 * 64 * 49 + 64 + 128) +
                                 4 * (64 * 64 * 49 + 64 + 128) + (64 * 11 + 11);
  EXPECT_EQ(parameter_count(*basic), basic_expected);
}

TEST(Choices, EveryNameReadsBackAsItsValueAndUnknownNamesAreRejected) {
  for (const auto& [model, name] : ChoiceNames<Model>::all()) EXPECT_EQ(choice_from_name<Model>(name), model) << name;
  for (const auto& [decoder, name] : ChoiceNames<Upsampling>::all()) EXPECT_EQ(choice_from_name<Upsampling>(name), decoder);
  EXPECT_EQ(to_string(Model::BayesianSegNetBasic), "bayesian-segnet-basic");
  EXPECT_FALSE(choice_from_name<Model>("unet"));
  EXPECT_FALSE(choice_from_name<Upsampling>("nearest"));
  EXPECT_EQ(choice_list<Upsampling>(), "indices, transposed or bilinear");
}

TEST(LayerPlan, BayesianModelsAreTheSameLayersWithDropoutInTheDeepestStages) {
  for (const auto& [bayesian, base, stages] : std::vector<std::tuple<Model, Model, int64_t>>{
           {Model::BayesianSegNet, Model::SegNet, 3}, {Model::BayesianSegNetBasic, Model::SegNetBasic, 2}}) {
    const LayerPlan plan = layer_plan(bayesian);
    EXPECT_EQ(plan.dropout_stages, stages);
    EXPECT_EQ(plan.encoder, layer_plan(base).encoder);
    EXPECT_EQ(plan.decoder, layer_plan(base).decoder);
    EXPECT_EQ(layer_plan(base).dropout_stages, 0);
  }
  // As in the authors' Caffe model: after the deepest encoder pools and after the deepest decoder stages.
  SegNet model(SegNetOptions(Model::BayesianSegNetBasic, 3));
  std::vector<std::string> dropouts;
  for (const auto& item : model->named_modules())
    if (item.value()->as<McDropoutImpl>()) dropouts.push_back(item.key());
  std::sort(dropouts.begin(), dropouts.end());
  EXPECT_EQ(dropouts, (std::vector<std::string>{"decoder3.dropout", "decoder4.dropout", "encoder3.dropout",
                                                "encoder4.dropout"}));
}

TEST(SegNet, EveryModelAndDecoderOutputsLogitsAtOddSizes) {
  torch::NoGradGuard no_grad;
  for (const auto& [model_kind, name] : ChoiceNames<Model>::all()) {
    const bool basic = layer_plan(model_kind).encoder.size() == 4;
    const int64_t height = basic ? 45 : 37, width = basic ? 61 : 45;  // SegNet is slow: keep it small
    const std::vector<int64_t> dilation = basic ? std::vector<int64_t>{1, 1, 2, 4} : std::vector<int64_t>{1, 1, 1, 2, 4};
    // Dilation and dropout touch different layers: dilating only the plain models covers each decoder
    // both ways in both families at half the cost.
    const bool dilated = layer_plan(model_kind).dropout_stages == 0;
    for (const auto& [decoder, decoder_name] : ChoiceNames<Upsampling>::all()) {
      SegNet model(SegNetOptions(model_kind, 5).upsampling(decoder).dilation(dilated ? dilation : std::vector<int64_t>{}));
      model->eval();
      EXPECT_EQ(model->forward(torch::randn({1, 3, height, width})).sizes(), (std::vector<int64_t>{1, 5, height, width}))
          << name << " " << decoder_name;
    }
  }
}

// The option that was wrong, and the problem in its message.
void expect_option_error(const std::function<void()>& build, const std::string& option, const std::string& phrase) {
  try {
    build();
    ADD_FAILURE() << option << ": bad value accepted";
  } catch (const OptionError& e) {
    EXPECT_EQ(e.option(), option) << e.what();
    EXPECT_NE(e.problem().find(phrase), std::string::npos) << e.what();
  }
}

TEST(SegNet, RejectsBadClassCountAndDilationNamingTheOption) {
  expect_option_error([] { SegNet(SegNetOptions(Model::SegNet, 0)); }, "num_classes", "1..254");
  expect_option_error([] { SegNet(SegNetOptions(Model::SegNetBasic, 3).dilation({1, 2, 4})); }, "dilation", "takes 4 values");
  expect_option_error([] { SegNet(SegNetOptions(Model::SegNet, 3).dilation({1, 1, 1, 2})); }, "dilation", "takes 5 values");
  expect_option_error([] { SegNet(SegNetOptions(Model::SegNetBasic, 3).dilation({1, 0, 1, 1})); }, "dilation", "at least 1");
  expect_option_error([] { validate(SegNetOptions(Model::SegNetBasic, 3).dilation({1, 1, -2, 1})); }, "dilation", "at least 1");
}

TEST(SegNet, MultiplyAddsMatchTheConvolutionsAtOddSizes) {
  // Counted independently by bench/reference.py from a traced forward pass.
  EXPECT_EQ(multiply_adds(SegNetOptions(Model::SegNet, 11), 360, 480), 106712432640);
  EXPECT_EQ(multiply_adds(SegNetOptions(Model::SegNetBasic, 11), 360, 480), 59188838400);
  // Ceil-mode stage sizes: 17x33 -> 9x17 -> 5x9 -> 3x5.
  const int64_t full = 17 * 33, s1 = 9 * 17, s2 = 5 * 9, s3 = 3 * 5;
  const int64_t per_px = 64 * 64 * 49;
  EXPECT_EQ(multiply_adds(SegNetOptions(Model::SegNetBasic, 2), 17, 33),
            full * 3 * 64 * 49 + (s1 + s2 + s3) * per_px + (s3 + s2 + s1 + full) * per_px + full * 64 * 2);
}

TEST(SegNet, MultiplyAddsCountTransposedConvolutionsOnly) {
  // Ceil-mode stage sizes 17x33 -> 9x17 -> 5x9 -> 3x5, pooled to 2x3: the decoders' inputs, deepest first,
  // are 2x3, 3x5, 5x9 and 9x17, and a 2x2 transposed convolution does in * out * 4 per input pixel.
  const SegNetOptions basic(Model::SegNetBasic, 2);
  const int64_t indices = multiply_adds(basic, 17, 33);
  EXPECT_EQ(multiply_adds(SegNetOptions(basic).upsampling(Upsampling::Transposed), 17, 33),
            indices + (2 * 3 + 3 * 5 + 5 * 9 + 9 * 17) * 64 * 64 * 4);
  EXPECT_EQ(multiply_adds(SegNetOptions(basic).upsampling(Upsampling::Bilinear), 17, 33), indices);
  EXPECT_EQ(multiply_adds(SegNetOptions(basic).dilation({1, 1, 2, 4}), 17, 33), indices);
  EXPECT_EQ(multiply_adds(SegNetOptions(Model::BayesianSegNetBasic, 2), 17, 33), indices);
  // SegNet at 360x480: decoder inputs 12x15 (512 channels), 23x30 (512), 45x60 (256), 90x120 (128), 180x240 (64).
  EXPECT_EQ(multiply_adds(SegNetOptions(Model::SegNet, 11).upsampling(Upsampling::Transposed), 360, 480),
            106712432640 + int64_t{4} * ((12 * 15 + 23 * 30) * 512 * 512 + 45 * 60 * 256 * 256 +
                                         90 * 120 * 128 * 128 + 180 * 240 * 64 * 64));
}

TEST(SegNet, VariantsHaveTheParametersOfTheirLayers) {
  const int64_t segnet = 29449355;
  EXPECT_EQ(parameter_count(*SegNet(SegNetOptions(Model::BayesianSegNet, 11))), segnet);  // dropout learns nothing
  // A 2x2 transposed convolution per decoder stage, in -> in channels: in * in * 4 weights + in biases.
  int64_t upconvs = 0;
  for (int64_t in : {512, 512, 256, 128, 64}) upconvs += in * in * 4 + in;
  EXPECT_EQ(parameter_count(*SegNet(SegNetOptions(Model::SegNet, 11).upsampling(Upsampling::Transposed))), segnet + upconvs);
  const int64_t basic = parameter_count(*SegNet(SegNetOptions(Model::SegNetBasic, 11)));
  EXPECT_EQ(parameter_count(*SegNet(SegNetOptions(Model::BayesianSegNetBasic, 11))), basic);
  EXPECT_EQ(parameter_count(*SegNet(SegNetOptions(Model::SegNetBasic, 11).upsampling(Upsampling::Bilinear))), basic);
  EXPECT_EQ(parameter_count(*SegNet(SegNetOptions(Model::SegNetBasic, 11).dilation({1, 1, 2, 4}))), basic);
  EXPECT_EQ(parameter_count(*SegNet(SegNetOptions(Model::SegNetBasic, 11).upsampling(Upsampling::Transposed))),
            basic + 4 * (64 * 64 * 4 + 64));
}

TEST(SegNet, McDropoutSamplesInEvalModeOnlyWhenAsked) {
  torch::manual_seed(6);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 3, 19, 23});
  SegNet bayesian(SegNetOptions(Model::BayesianSegNetBasic, 3));
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

  SegNet plain(SegNetOptions(Model::SegNetBasic, 3));
  EXPECT_FALSE(plain->has_dropout());
  plain->eval();
  const auto before = plain->forward(x);
  plain->set_mc_dropout(true);
  EXPECT_TRUE(torch::equal(plain->forward(x), before));
}

TEST(SegNet, FoldedBatchNormGivesTheSameOutput) {
  for (const auto& options : {SegNetOptions(Model::SegNetBasic, 3), SegNetOptions(Model::SegNetBasic, 3).upsampling(Upsampling::Transposed),
                              SegNetOptions(Model::SegNetBasic, 3).upsampling(Upsampling::Bilinear),
                              SegNetOptions(Model::SegNetBasic, 3).dilation({1, 1, 2, 4})}) {
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
        << to_string(options.upsampling()) << " dilated: " << !options.dilation().empty();
  }
}

// The plain layout only where it was measured faster: fp32 on processors without AVX-512 (where bf16
// is slow too); bf16, int8 and CUDA stay channels-last.
TEST(SegNet, PlainLayoutOnlyForFp32WithoutAvx512) {
  const bool avx512 = has_fast_bf16(torch::kCPU);
  EXPECT_EQ(fastest_memory_format(torch::kCPU, Precision::Float32),
            avx512 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  for (const auto precision : {Precision::BFloat16, Precision::Int8})
    EXPECT_EQ(fastest_memory_format(torch::kCPU, precision), at::MemoryFormat::ChannelsLast);
  EXPECT_EQ(fastest_memory_format(torch::kCUDA, Precision::Float32), at::MemoryFormat::ChannelsLast);
}

TEST(SegNet, ChannelsLastParametersGiveTheSameOutput) {
  torch::manual_seed(8);
  torch::NoGradGuard no_grad;
  for (const auto& [decoder, name] : ChoiceNames<Upsampling>::all()) {
    SegNet model(SegNetOptions(Model::SegNetBasic, 3).upsampling(decoder).dilation({1, 2, 1, 1}));
    model->eval();
    const auto x = torch::randn({1, 3, 21, 25});
    const auto before = model->forward(x);
    to_memory_format(*model, at::MemoryFormat::ChannelsLast);
    EXPECT_TRUE(torch::allclose(model->forward(x.contiguous(at::MemoryFormat::ChannelsLast)), before, 1e-4, 1e-4))
        << name;
  }
}

// Inference in bf16 (bf16 weights, as the Segmenter runs it) computes what fp32 does, for every
// decoder: LibTorch 1.13's own bf16 transposed convolution would return a wrongly sized output.
TEST(SegNet, Bf16WeightsGiveTheFp32OutputForEveryDecoder) {
  torch::manual_seed(9);
  torch::NoGradGuard no_grad;
  for (const auto& [decoder, name] : ChoiceNames<Upsampling>::all()) {
    SegNet model(SegNetOptions(Model::SegNetBasic, 3).upsampling(decoder));
    model->eval();
    const auto x = torch::randn({1, 3, 21, 25});
    const auto fp32 = model->forward(x);
    model->to(torch::kBFloat16);
    to_memory_format(*model, at::MemoryFormat::ChannelsLast);
    const auto bf16 = model->forward(x.to(torch::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast)).to(torch::kFloat);
    ASSERT_EQ(bf16.sizes(), fp32.sizes()) << name;
    EXPECT_LT((bf16 - fp32).abs().mean().item<double>(), 0.02 * fp32.abs().mean().item<double>()) << name;
  }
}

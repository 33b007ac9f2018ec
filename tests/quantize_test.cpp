// int8 inference: weight and activation quantization, the quantized network against fp32, calibrated
// checkpoints, the options int8 refuses, and `segnet calibrate`.
#include <segnet/bench.h>
#include <segnet/checkpoint.h>
#include <segnet/error.h>
#include <segnet/quantize.h>
#include <segnet/segmenter.h>
#include <segnet/train.h>

#include "inference/int8_convolution.h"
#include "inference/int8_pooling.h"

#include "expect_error.h"
#include "model_info.h"
#include "python.h"
#include "run_cli.h"
#include "temp_dir.h"
#include "test_name.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <zlib.h>

#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

using namespace segnet;
namespace fs = std::filesystem;
using segnet::test::contains;
using segnet::test::quote;
using segnet::test::segnet_cli;
using segnet::test::TempDir;
using segnet::test::unique_temp_dir;

namespace {

// A model with non-trivial batch-norm statistics, so that folding them is part of what is checked.
SegNet random_model(const SegNetOptions& options, int64_t height, int64_t width) {
  torch::manual_seed(3);
  SegNet model(options);
  model->train();
  torch::NoGradGuard no_grad;
  for (int i = 0; i < 3; ++i) model->forward(torch::randn({2, 3, height, width}) * 1.5 + 0.3);
  model->eval();
  return model;
}

// `n` random 8-bit images normalised with `norm`, as the Segmenter gives them to the network.
torch::Tensor normalised_images(int64_t n, int64_t height, int64_t width, const Normalization& norm) {
  return (torch::randint(0, 256, {n, 3, height, width}).to(torch::kFloat) / 255 - channel_tensor(norm.mean)) /
         channel_tensor(norm.std);
}

std::string option_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const OptionError& e) {
    return e.option();
  }
  return "";
}

}  // namespace

TEST(Quantize, PerChannelWeightsRoundTripWithinHalfAStep) {
  torch::manual_seed(1);
  // Channels of very different magnitudes: one scale for all would flatten the small ones to zero.
  const auto w = torch::randn({6, 5, 3, 3}) * torch::tensor({0.001f, 0.01f, 0.1f, 1.f, 10.f, 0.f}).view({-1, 1, 1, 1});
  EXPECT_EQ(option_of([&] { quantize_weight(w, 0); }), "levels");
  EXPECT_EQ(option_of([&] { quantize_weight(w, 128); }), "levels");
  const auto q = quantize_weight(w);
  ASSERT_EQ(q.qscheme(), at::kPerChannelAffine);
  EXPECT_EQ(q.q_per_channel_axis(), 0);
  EXPECT_EQ(q.int_repr().abs().max().item<int>(), 127);  // the largest magnitude uses the whole range
  const auto scales = q.q_per_channel_scales();
  for (int64_t c = 0; c < 6; ++c) {
    const double step = scales[c].item<double>();
    EXPECT_GT(step, 0) << "channel " << c;
    const double error = (q.dequantize()[c] - w[c]).abs().max().item<double>();
    EXPECT_LE(error, step / 2 * (1 + 1e-5)) << "channel " << c;
  }
  EXPECT_EQ(q.q_per_channel_zero_points().abs().sum().item<int64_t>(), 0);  // symmetric
}

// PyTorch's own per-channel quantization of the same weights, with the scale rule stated in quantize.h.
TEST(Quantize, WeightsAgreeWithPyTorch) {
  if (!segnet::test::python_has("torch")) GTEST_SKIP() << "python3 has no torch";
  torch::manual_seed(2);
  const auto w = torch::randn({4, 3, 3, 3}) * torch::tensor({0.05f, 0.5f, 2.f, 7.f}).view({-1, 1, 1, 1});
  const auto flat = w.flatten();
  const std::vector<float> values(flat.data_ptr<float>(), flat.data_ptr<float>() + flat.numel());
  const auto out = segnet::test::python_output(
      "import torch\n"
      "w = torch.tensor(" + segnet::test::python_list(values) + ", dtype=torch.float32).reshape(4, 3, 3, 3)\n"
      "s = (w.abs().amax(dim=(1, 2, 3)) / 127).double()\n"
      "q = torch.quantize_per_channel(w, s, torch.zeros(4, dtype=torch.long), 0, torch.qint8)\n"
      "print(\" \".join(str(v) for v in q.int_repr().flatten().tolist()))\n");
  ASSERT_TRUE(out.has_value());
  std::istringstream in(*out);
  const auto ours = quantize_weight(w).int_repr().flatten();
  int64_t i = 0;
  for (int v; in >> v; ++i) ASSERT_EQ(ours[i].item<int>(), v) << "weight " << i;
  EXPECT_EQ(i, ours.numel());
}

// Against LibTorch's fp64 convolution of the same integers, rounded once: inputs and weights over
// their whole ranges, where summing pairs of products in 16 bits would saturate (on processors without
// VNNI, LibTorch's own int8 convolutions were off by up to 24 steps); zero points, padding, dilation.
TEST(Quantize, Int8ConvolutionIsTheExactConvolutionRoundedOnce) {
  torch::manual_seed(6);
  for (const int64_t channels : {3, 64}) {
    for (const bool relu : {true, false}) {
      const auto weight = torch::randn({16, channels, 3, 3});
      const auto bias = torch::randn({16}) * 0.5;
      const QuantParams input{0.02, relu ? 0 : 37}, output{relu ? 0.05 : 0.1, relu ? 0 : 131};
      const int64_t dilation = relu ? 1 : 2;
      Int8Convolution conv(weight, bias, {input, output, relu, dilation, dilation});
      const auto codes = torch::randint(0, 256, {2, channels, 11, 13}, torch::kUInt8);
      const auto x = at::_make_per_tensor_quantized_tensor(codes, input.scale, input.zero_point);
      const auto got = conv.forward(x).int_repr().to(torch::kInt);

      const auto w = quantize_weight(weight, Int8Convolution::weight_levels()).dequantize().to(torch::kDouble);
      auto exact = torch::conv2d(x.dequantize().to(torch::kDouble), w, bias.to(torch::kDouble), 1, dilation, dilation);
      if (relu) exact = exact.relu();
      const auto expected = (exact / output.scale).round().add(output.zero_point).clamp(0, 255).to(torch::kInt);
      ASSERT_EQ(got.sizes(), expected.sizes());
      const auto off = (got - expected).abs();
      EXPECT_LE(off.max().item<int>(), 1) << channels << " channels, relu " << relu;  // float rounding at a half step
      EXPECT_GT(off.eq(0).to(torch::kFloat).mean().item<double>(), 0.99) << channels << " channels, relu " << relu;
    }
  }
}

// The classifier's form: no output quantization, the exact integer convolution plus bias in fp32 (its
// one rounding is fp32's), with a zero point and padding; for a 1x1 (segnet-basic) and a 3x3 (segnet) kernel.
TEST(Quantize, Int8ConvolutionWithFloatOutputIsTheExactConvolution) {
  torch::manual_seed(8);
  for (const int64_t kernel : {1, 3}) {
    const auto weight = torch::randn({11, 64, kernel, kernel});
    const auto bias = torch::randn({11});
    const QuantParams input{0.03, 91};
    Int8Convolution conv(weight, bias, {input, std::nullopt, /*relu=*/false, kernel / 2, 1});
    const auto codes = torch::randint(0, 256, {2, 64, 9, 14}, torch::kUInt8);
    const auto x = at::_make_per_tensor_quantized_tensor(codes, input.scale, input.zero_point);
    const auto got = conv.forward(x);
    ASSERT_EQ(got.scalar_type(), torch::kFloat);
    const auto w = quantize_weight(weight, Int8Convolution::weight_levels()).dequantize().to(torch::kDouble);
    const auto exact = torch::conv2d(x.dequantize().to(torch::kDouble), w, bias.to(torch::kDouble), 1, kernel / 2);
    ASSERT_EQ(got.sizes(), exact.sizes());
    const double off = (got.to(torch::kDouble) - exact).abs().max().item<double>();
    EXPECT_LT(off, 1e-5 * exact.abs().max().item<double>()) << kernel << "x" << kernel;
  }
}

// Against LibTorch's max_pool2d_with_indices and max_unpool2d on the same values: few distinct codes, so
// that most windows hold ties, odd sizes (short windows) and a channel count no vector width divides.
TEST(Quantize, Int8PoolingAndUnpoolingMatchLibTorch) {
  torch::manual_seed(9);
  const int64_t H = 7, W = 11;
  const auto x = at::_make_per_tensor_quantized_tensor(torch::randint(0, 6, {2, 19, H, W}, torch::kUInt8), 0.1, 3);
  const auto [pooled, where] = int8_max_pool(x);
  const auto [expected, indices] = torch::max_pool2d_with_indices(x.dequantize(), 2, 2, 0, 1, /*ceil_mode=*/true);
  ASSERT_EQ(pooled.sizes(), expected.sizes());
  EXPECT_TRUE(torch::equal(pooled.dequantize(), expected));
  // Window positions (N x h x w x C, 0..3 row by row) as LibTorch's flat indices in each H x W plane.
  const auto k = where.permute({0, 3, 1, 2}).to(torch::kLong);
  const auto row = torch::arange(expected.size(2)).view({1, 1, -1, 1}) * 2 + k.div(2, "floor");
  const auto col = torch::arange(expected.size(3)).view({1, 1, 1, -1}) * 2 + k.remainder(2);
  EXPECT_TRUE(torch::equal(row * W + col, indices));
  const auto unpooled = int8_max_unpool(pooled, where, {H, W});
  EXPECT_TRUE(torch::equal(unpooled.dequantize(), torch::max_unpool2d(expected, indices, {H, W})));
}

// Each call brings its own scratch memory: threads sharing one convolution get what each would alone.
TEST(Quantize, Int8ConvolutionRunsOnSeveralThreadsAtOnce) {
  torch::manual_seed(7);
  const QuantParams input{0.02, 0}, output{0.05, 0};
  Int8Convolution conv(torch::randn({32, 32, 3, 3}), torch::randn({32}), {input, output, true, 1, 1});
  std::vector<torch::Tensor> inputs, alone, together(4);
  for (int i = 0; i < 4; ++i) {
    inputs.push_back(at::_make_per_tensor_quantized_tensor(torch::randint(0, 256, {1, 32, 40, 56}, torch::kUInt8),
                                                           input.scale, input.zero_point));
    alone.push_back(conv.forward(inputs.back()).int_repr());
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      for (int repeat = 0; repeat < 5; ++repeat) together[i] = conv.forward(inputs[i]).int_repr();
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(torch::equal(together[i], alone[i])) << "thread " << i;
}

TEST(Quantize, ActivationParamsHoldZeroAndTheRange) {
  for (const ActivationRange r : {ActivationRange{0.5f, 2.f}, ActivationRange{-3.f, -1.f}, ActivationRange{-1.f, 3.f},
                                  ActivationRange{0.f, 6.f}, ActivationRange{-0.01f, 100.f}}) {
    const QuantParams p = quant_params(r);
    SCOPED_TRACE(std::to_string(r.min) + ".." + std::to_string(r.max));
    ASSERT_GT(p.scale, 0);
    ASSERT_GE(p.zero_point, 0);
    ASSERT_LE(p.zero_point, 255);
    // 0 is a code (zero padding, ReLU, unpooling), and the range's ends are within half a step of one.
    EXPECT_LE(-p.zero_point * p.scale, r.min + p.scale / 2);
    EXPECT_GE((255 - p.zero_point) * p.scale, r.max - p.scale / 2);
  }
  EXPECT_EQ(quant_params({0.f, 6.f}).zero_point, 0);  // after a ReLU every code is used for positives
  EXPECT_EQ(quant_params({-3.f, -1.f}).zero_point, 255);
  EXPECT_GT(quant_params({0.f, 0.f}).scale, 0);
}

TEST(Quantize, CalibrationRangesAreOnePerActivationAndOrdered) {
  const SegNetOptions options(Model::SegNetBasic, 5);
  const SegNet model = random_model(options, 24, 32);
  const auto x = torch::randn({1, 3, 24, 32});
  const auto ranges = calibrate(model, {x}, {100.0});
  ASSERT_EQ(static_cast<int64_t>(ranges.size()), activation_count(options));  // the image has none
  for (size_t i = 0; i < 4; ++i) EXPECT_GE(ranges[i].min, 0) << "encoder ReLU outputs";
  const auto wider = calibrate(model, {x, x * 2}, {100.0});
  for (size_t i = 0; i < ranges.size(); ++i) EXPECT_GE(wider[i].max, ranges[i].max);
  const auto trimmed = calibrate(model, {x}, {99.0});
  EXPECT_LT(trimmed[0].max, ranges[0].max);
  EXPECT_EQ(option_of([&] { calibrate(model, {x}, {50.0}); }), "percentile");
  EXPECT_EQ(option_of([&] { calibrate(model, {}); }), "images");
  EXPECT_EQ(activation_count(SegNetOptions(Model::SegNetBasic, 5).upsampling(Upsampling::Transposed)),
            activation_count(options) + 4);  // and each transposed-convolution decoder's upsampled input
}

struct NetworkCase {
  Model model;
  Upsampling upsampling;
  int64_t height, width;
};

class QuantizedNetwork : public ::testing::TestWithParam<NetworkCase> {};

// Random weights are the hard case: their logits differ little between classes. Trained models agree
// more (see CalibratedModel.Int8AgreesWithFp32).
TEST_P(QuantizedNetwork, LogitsCloseToFp32) {
  const NetworkCase c = GetParam();
  const auto options = SegNetOptions(c.model, 5).upsampling(c.upsampling);
  const SegNet model = random_model(options, c.height, c.width);
  const ModelInfo info = test::test_model_info(c.model, 5, {c.height, c.width});
  torch::manual_seed(4);
  std::vector<torch::Tensor> calibration;
  for (int i = 0; i < 4; ++i) calibration.push_back(normalised_images(1, c.height, c.width, info.norm));
  QuantizedSegNet int8(model, calibrate(model, calibration), info.norm);
  const auto x = normalised_images(2, c.height, c.width, info.norm);
  Segmenter fp32(info, model, torch::kCPU);
  const auto expected = fp32.logits(x), got = int8.forward(x);
  ASSERT_EQ(got.sizes(), expected.sizes());
  const double relative = ((got - expected).norm() / expected.norm()).item<double>();
  const double agreement = got.argmax(1).eq(expected.argmax(1)).to(torch::kFloat).mean().item<double>();
  RecordProperty("relative_error", std::to_string(relative));
  RecordProperty("argmax_agreement", std::to_string(agreement));
  EXPECT_LT(relative, 0.05);  // seen: 0.002-0.028
  EXPECT_GT(agreement, 0.9);  // seen: 0.93-1
}

// The image is not rounded: values off the 8-bit grid by less than half a step give the same logits.
TEST(Quantize, ImagesAreExactInUint8) {
  const auto info = test::test_model_info(Model::SegNetBasic, 5, {24, 32});
  const SegNet model = random_model(info.options(), 24, 32);
  torch::manual_seed(7);
  const auto x = normalised_images(1, 24, 32, info.norm);
  QuantizedSegNet int8(model, calibrate(model, {x}), info.norm);
  const auto std = channel_tensor(info.norm.std);
  const auto off_grid = x + (torch::rand_like(x) - 0.5) * 0.9 / 255 / std;
  EXPECT_TRUE(torch::equal(int8.forward(x), int8.forward(off_grid)));
  EXPECT_FALSE(torch::equal(int8.forward(x), int8.forward(x + 2.0 / 255 / std)));  // two grey levels brighter
}

INSTANTIATE_TEST_SUITE_P(
    Models, QuantizedNetwork,
    ::testing::Values(NetworkCase{Model::SegNetBasic, Upsampling::Indices, 30, 45},  // odd sizes: short pool windows
                      NetworkCase{Model::SegNetBasic, Upsampling::Transposed, 24, 32},
                      NetworkCase{Model::SegNetBasic, Upsampling::Bilinear, 24, 32},
                      NetworkCase{Model::SegNet, Upsampling::Indices, 32, 48}),
    [](const ::testing::TestParamInfo<NetworkCase>& info) {
      return test_name(to_string(info.param.model) + "_" + to_string(info.param.upsampling));
    });

class EqualizedNetwork : public ::testing::TestWithParam<NetworkCase> {};

TEST_P(EqualizedNetwork, KeepsTheFunctionAndGivesChannelsOnePeak) {
  const NetworkCase c = GetParam();
  const auto options = SegNetOptions(c.model, 5).upsampling(c.upsampling);
  SegNet model = random_model(options, c.height, c.width);
  torch::manual_seed(6);
  const std::vector<torch::Tensor> inputs{torch::randn({1, 3, c.height, c.width}), torch::randn({1, 3, c.height, c.width})};
  SegNet equalized = copy_model(model);
  equalized->eval();
  equalize_channels(equalized, inputs);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 3, c.height, c.width});
  const auto before = model->forward(x), after = equalized->forward(x);
  EXPECT_LT(((after - before).norm() / before.norm()).item<double>(), 1e-4);

  // The first block's channels, which random weights give peaks of different heights, now share one.
  auto* first = equalized->children()[0]->as<EncoderStageImpl>()->convs->children()[0]->as<ConvBlockImpl>();
  auto* original = model->children()[0]->as<EncoderStageImpl>()->convs->children()[0]->as<ConvBlockImpl>();
  const auto peaks = [&](ConvBlockImpl* block) {
    return (block->forward(inputs[0]).abs().amax({0, 2, 3}) + block->forward(inputs[1]).abs().amax({0, 2, 3})) / 2;
  };
  const auto was = peaks(original), now = peaks(first);
  EXPECT_GT((was.max() / was.min()).item<double>(), 1.1);
  EXPECT_NEAR((now.min() / now.max()).item<double>(), 1.0, 1e-4);
  EXPECT_EQ(option_of([&] { equalize_channels(equalized, {}); }), "images");
}

INSTANTIATE_TEST_SUITE_P(
    Models, EqualizedNetwork,
    ::testing::Values(NetworkCase{Model::SegNetBasic, Upsampling::Indices, 30, 45},
                      NetworkCase{Model::SegNetBasic, Upsampling::Transposed, 24, 32},
                      NetworkCase{Model::SegNetBasic, Upsampling::Bilinear, 24, 32},
                      NetworkCase{Model::SegNet, Upsampling::Indices, 32, 48}),
    [](const ::testing::TestParamInfo<NetworkCase>& info) {
      return test_name(to_string(info.param.model) + "_" + to_string(info.param.upsampling));
    });

TEST(Quantize, RangesThatDoNotFitTheModelAreAnError) {
  const SegNet model = random_model(SegNetOptions(Model::SegNetBasic, 3), 16, 16);
  EXPECT_TRUE(contains(segnet::test::error_of([&] { QuantizedSegNet(model, std::vector<ActivationRange>{{0.f, 1.f}}, {}); }),
                       "calibrated ranges"));
}

TEST(Quantize, Int8RefusesWhatItCannotDo) {
  auto info = test::test_model_info(Model::SegNetBasic, 3, {16, 16});
  const SegNet model = random_model(info.options(), 16, 16);
  EXPECT_EQ(option_of([&] { Segmenter(info, model, torch::kCPU, {Precision::Int8}); }), "precision");  // no ranges
  info.activation_ranges = calibrate(model, {torch::randn({1, 3, 16, 16})});
  EXPECT_EQ(option_of([&] { Segmenter(info, model, torch::Device("cuda"), {Precision::Int8}); }), "precision");
  EXPECT_EQ(option_of([&] { Segmenter(info, model, torch::kCPU, {Precision::Int8}); }), "");
  TrainOptions train;
  train.data = "data";
  train.out = "run";
  train.precision = Precision::Int8;
  EXPECT_EQ(option_of([&] { validate(train); }), "precision");
  BenchOptions bench;
  bench.train = true;
  bench.precision = Precision::Int8;
  EXPECT_EQ(option_of([&] { run_benchmark(bench); }), "precision");
}

namespace {

// The checkpoint file format (checkpoint.cpp): a LibTorch archive, then "segnetck", its length and CRC-32.
void write_checkpoint_bytes(const fs::path& file, torch::serialize::OutputArchive& root) {
  std::string bytes;
  root.save_to([&](const void* data, size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  const uint64_t length = bytes.size();
  const auto crc = static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(length)));
  bytes.append("segnetck", 8);
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  std::ofstream(file, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// `file` written again with its metadata changed by `edit`.
void rewrite_meta(const fs::path& file, const std::function<void(nlohmann::json&)>& edit) {
  const std::string bytes = segnet::test::slurp(file);
  torch::serialize::InputArchive in;
  in.load_from(bytes.data(), bytes.size() - 20);
  c10::IValue meta;
  in.read("meta", meta);
  auto j = nlohmann::json::parse(meta.toStringRef());
  edit(j);
  const Checkpoint original = load_checkpoint(file);
  torch::serialize::OutputArchive root, model;
  original.model->save(model);
  root.write("model", model);
  root.write("meta", c10::IValue(j.dump()));
  write_checkpoint_bytes(file, root);
}

}  // namespace

TEST(Quantize, CheckpointsKeepRangesAndOldOnesStillLoad) {
  TempDir dir;
  auto info = test::test_model_info(Model::SegNetBasic, 3, {16, 16});
  SegNet model = random_model(info.options(), 16, 16);
  info.activation_ranges = calibrate(model, {torch::randn({1, 3, 16, 16}) * 3.3});
  save_checkpoint(dir.path / "ck.pt", info, model, nullptr, {});
  const auto loaded = load_checkpoint(dir.path / "ck.pt").info.activation_ranges;
  ASSERT_EQ(loaded.size(), info.activation_ranges.size());
  for (size_t i = 0; i < loaded.size(); ++i) {  // exactly: float -> JSON number -> float
    EXPECT_EQ(loaded[i].min, info.activation_ranges[i].min);
    EXPECT_EQ(loaded[i].max, info.activation_ranges[i].max);
  }

  // Calibrated before the image was exact in uint8: the input's range first, now not needed.
  rewrite_meta(dir.path / "ck.pt", [](nlohmann::json& j) {
    j["activation_ranges"].insert(j["activation_ranges"].begin(), nlohmann::json::array({-2, 3}));
  });
  const auto old = load_checkpoint(dir.path / "ck.pt").info.activation_ranges;
  ASSERT_EQ(old.size(), info.activation_ranges.size());
  EXPECT_EQ(old[0].max, info.activation_ranges[0].max);

  rewrite_meta(dir.path / "ck.pt", [](nlohmann::json& j) { j.erase("activation_ranges"); });  // before int8
  EXPECT_TRUE(load_checkpoint(dir.path / "ck.pt").info.activation_ranges.empty());
  const auto message = segnet::test::error_of([&] { Segmenter::from_checkpoint(dir.path / "ck.pt", torch::kCPU, {Precision::Int8}); });
  EXPECT_TRUE(contains(message, "ck.pt")) << message;
  EXPECT_TRUE(contains(message, "no int8 activation ranges")) << message;

  rewrite_meta(dir.path / "ck.pt", [](nlohmann::json& j) { j["activation_ranges"] = {{0, 1}, {0, 2}}; });
  EXPECT_TRUE(contains(segnet::test::error_of([&] { load_checkpoint(dir.path / "ck.pt"); }), "holds 2 int8 activation ranges"));
}

// A segnet-basic trained briefly on a synthetic dataset, for what needs a model that has learnt something.
class CalibratedModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = unique_temp_dir("CalibratedModel");
    fs::create_directories(root_);
    synthesize_dataset({root_ / "data", 40, {48, 64}, 5});
    TrainOptions o;
    o.data = root_ / "data";
    o.model = Model::SegNetBasic;
    o.size = {48, 64};
    o.batch = 4;
    o.epochs = 3;
    o.optimizer = Optimizer::Adam;
    o.out = root_ / "run";
    o.seed = 5;
    train(o);
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static fs::path root_;
};
fs::path CalibratedModel::root_;

TEST_F(CalibratedModel, Int8AgreesWithFp32) {
  for (const bool equalize : {true, false}) {
    CheckpointCalibration c;  // the defaults: all 32 training images (fewer than 32), 99.99th percentiles
    c.checkpoint = root_ / "run" / "last.pt";
    c.data = root_ / "data";
    c.out = root_ / "agree.pt";
    c.equalize = equalize;
    const CalibrationReport r = calibrate_checkpoint(c);
    EXPECT_EQ(r.images, 32);
    Segmenter fp32 = Segmenter::from_checkpoint(c.checkpoint, torch::kCPU);
    Segmenter int8 = Segmenter::from_checkpoint(r.out, torch::kCPU, {Precision::Int8});
    int64_t same = 0, total = 0;
    for (const auto& sample : find_samples(c.data, "val.txt")) {
      const cv::Mat image = read_image(sample.image, std::nullopt);
      const cv::Mat a = fp32.segment(image), b = int8.segment(image);
      same += cv::countNonZero(a == b);
      total += a.total();
    }
    const double agreement = static_cast<double>(same) / total;
    RecordProperty(equalize ? "pixel_agreement" : "pixel_agreement_unequalized", std::to_string(agreement));
    EXPECT_GE(agreement, 0.98) << (equalize ? "equalized" : "not equalized");  // seen: 0.988; not: 0.986-0.989
  }
}

TEST_F(CalibratedModel, CalibrateCommandWritesALoadableCopy) {
  const fs::path ck = root_ / "run" / "last.pt", out = root_ / "cli_int8.pt";
  const auto r = segnet_cli("calibrate --checkpoint " + quote(ck) + " --data " + quote(root_ / "data") +
                                " --images 3 --threads 1 --out " + quote(out),
                            root_);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "on 3 images")) << r.out;
  const Checkpoint loaded = load_checkpoint(out);
  EXPECT_EQ(static_cast<int64_t>(loaded.info.activation_ranges.size()), activation_count(loaded.info.options()));
  EXPECT_TRUE(load_checkpoint(ck).info.activation_ranges.empty());  // the original is untouched

  const auto eval = segnet_cli("eval --precision int8 --threads 1 --checkpoint " + quote(out) + " --data " + quote(root_ / "data"), root_);
  EXPECT_EQ(eval.status, 0) << eval.err;
  EXPECT_TRUE(contains(eval.out, "mIoU")) << eval.out;
  const auto predict = segnet_cli("predict --precision int8 --threads 1 --checkpoint " + quote(out) + " --out " +
                                      quote(root_ / "predicted") + " " + quote(root_ / "data" / "val"),
                                  root_);
  EXPECT_EQ(predict.status, 0) << predict.err;
  EXPECT_TRUE(contains(predict.out, "segmented 8 images")) << predict.out;

  // The default name, beside the checkpoint; the weights equalized by default, kept with --no-equalize.
  const auto named = segnet_cli("calibrate --checkpoint " + quote(ck) + " --data " + quote(root_ / "data") + " --images 1 --no-equalize", root_);
  ASSERT_EQ(named.status, 0) << named.err;
  ASSERT_TRUE(fs::exists(root_ / "run" / "last_int8.pt"));
  const auto same_weights = [&](const fs::path& file) {
    const auto a = load_checkpoint(ck).model->parameters(), b = load_checkpoint(file).model->parameters();
    for (size_t i = 0; i < a.size(); ++i)
      if (!torch::equal(a[i], b[i])) return false;
    return true;
  };
  EXPECT_TRUE(same_weights(root_ / "run" / "last_int8.pt"));
  EXPECT_FALSE(same_weights(out));
}

TEST_F(CalibratedModel, BenchTimesATrainedCheckpointOnAnImage) {
  const fs::path ck = root_ / "run" / "last.pt", calibrated = root_ / "bench_int8.pt";
  const auto image = find_samples(root_ / "data", "val.txt").front().image;
  ASSERT_EQ(segnet_cli("calibrate --checkpoint " + quote(ck) + " --data " + quote(root_ / "data") + " --images 2 --out " +
                           quote(calibrated), root_).status, 0);
  const auto json = root_ / "bench.json";
  const auto r = segnet_cli("bench --precision int8 --threads 1 --size 48x64 --iters 1 --warmup 0 --checkpoint " +
                                quote(calibrated) + " --image " + quote(image) + " --json " + quote(json),
                            root_);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "segnet-basic infer int8")) << r.out;  // the checkpoint's model, not --model's default
  const auto j = nlohmann::json::parse(segnet::test::slurp(json));
  EXPECT_EQ(j["checkpoint"], calibrated.string());
  EXPECT_EQ(j["image"], image.string());
  // A checkpoint without ranges for int8, and a checkpoint or image for training, are refused.
  const auto bench = [&](const std::string& args) { return segnet_cli("bench --iters 1 " + args, root_); };
  EXPECT_TRUE(test::FailsWithOneLineNaming(bench("--precision int8 --checkpoint " + quote(ck)), "last.pt"));
  EXPECT_TRUE(test::FailsWithOneLineNaming(bench("--mode train --checkpoint " + quote(ck)), "--checkpoint"));
  EXPECT_TRUE(test::FailsWithOneLineNaming(bench("--image " + quote(root_ / "missing.png")), "missing.png"));
}

TEST_F(CalibratedModel, CalibrateCommandRefusesBadInput) {
  const std::string data = " --data " + quote(root_ / "data");
  const fs::path ck = root_ / "run" / "last.pt";
  EXPECT_TRUE(test::FailsWithOneLineNaming(segnet_cli("calibrate --checkpoint " + quote(root_ / "missing.pt") + data, root_), "missing.pt"));
  EXPECT_TRUE(test::FailsWithOneLineNaming(segnet_cli("calibrate --checkpoint " + quote(ck) + data + " --images 0", root_), "--images"));
  EXPECT_TRUE(test::FailsWithOneLineNaming(segnet_cli("calibrate --checkpoint " + quote(ck) + data + " --percentile 30", root_), "--percentile"));
  EXPECT_TRUE(test::FailsWithOneLineNaming(segnet_cli("calibrate --checkpoint " + quote(ck) + data + " --out " + quote(ck), root_), "--out"));
  // int8 needs a calibrated checkpoint, and is for inference only.
  EXPECT_TRUE(test::FailsWithOneLineNaming(segnet_cli("eval --precision int8 --checkpoint " + quote(ck) + data, root_), "last.pt"));
  EXPECT_TRUE(test::FailsWithOneLineNaming(segnet_cli("bench --mode train --precision int8 --size 16x16 --iters 1", root_), "--precision"));
}

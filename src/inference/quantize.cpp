#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/quantize.h>

#include "inference/int8_convolution.h"
#include "inference/int8_pooling.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>

namespace segnet {

namespace {

struct Stages {
  std::vector<EncoderStageImpl*> encoder;
  std::vector<DecoderStageImpl*> decoder;  // deepest first
  torch::nn::Conv2dImpl* classifier = nullptr;
};

// The network's stages in the order SegNetImpl registers them.
Stages stages_of(SegNetImpl& model) {
  Stages s;
  for (const auto& child : model.children()) {
    if (auto* e = child->as<EncoderStageImpl>()) s.encoder.push_back(e);
    else if (auto* d = child->as<DecoderStageImpl>()) s.decoder.push_back(d);
    else if (auto* c = child->as<torch::nn::Conv2dImpl>()) s.classifier = c;
  }
  return s;
}

std::vector<ConvBlockImpl*> blocks_of(torch::nn::Sequential& convs) {
  std::vector<ConvBlockImpl*> blocks;
  for (const auto& m : convs->children()) blocks.push_back(m->as<ConvBlockImpl>());
  return blocks;
}

// A copy of `model` for inference: eval mode, batch norm folded, fp32 channels-last on the CPU.
SegNet inference_copy(const SegNet& model) {
  SegNet copy = copy_model(model);
  copy->eval();
  copy->fold_batch_norm();
  copy->to(torch::kCPU, torch::kFloat);
  to_memory_format(*copy, at::MemoryFormat::ChannelsLast);
  return copy;
}

// The stage names SegNetImpl::forward records, so that profiles of both paths read alike.
std::string stage_name(const char* kind, size_t stage) { return kind + std::to_string(stage + 1); }

// One image's range of `x`: its extremes, or its (100 - p)th and p-th percentiles.
ActivationRange range_of(const torch::Tensor& x, double percentile) {
  if (percentile >= 100) return {x.min().item<float>(), x.max().item<float>()};
  const auto flat = x.flatten();
  const int64_t n = flat.numel();
  const int64_t k = std::max<int64_t>(1, std::llround(n * (100 - percentile) / 100));
  return {std::get<0>(flat.kthvalue(k)).item<float>(), std::get<0>(flat.kthvalue(n - k + 1)).item<float>()};
}

// fp32 values of a channels-last uint8 tensor; LibTorch's dequantize takes several times longer on these.
torch::Tensor dequantized(const torch::Tensor& input) {
  RECORD_FUNCTION("segnet::int8_dequantize", std::vector<c10::IValue>());
  const auto q = input.contiguous(at::MemoryFormat::ChannelsLast);
  auto out = torch::empty(q.sizes(), torch::dtype(torch::kFloat).memory_format(at::MemoryFormat::ChannelsLast));
  const uint8_t* __restrict in = bytes_of(q);
  float* __restrict values = out.data_ptr<float>();
  const auto scale = static_cast<float>(q.q_scale());
  const auto zero = static_cast<int32_t>(q.q_zero_point());
  at::parallel_for(0, q.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) values[i] = static_cast<float>(static_cast<int32_t>(in[i]) - zero) * scale;
  });
  return out;
}

// The image's 8-bit pixels, scaled to 0..1, are exact as uint8 with this step and no offset.
constexpr QuantParams kImage{1.0 / 255, 0};

// The normalised images `input` (N x 3 x H x W fp32) as the 0..1 pixel values they came from, in uint8
// with kImage's step, channels-last, padded by `padding` on every side with each channel's mean (the
// normalised image's zero). One pass: LibTorch's padding, arithmetic and quantize_per_tensor took
// several times longer.
torch::Tensor image_codes(const torch::Tensor& input, const Normalization& norm, int64_t padding) {
  RECORD_FUNCTION("segnet::int8_quantize_image", std::vector<c10::IValue>());
  const auto x = input.to(torch::kCPU, torch::kFloat).contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), Hp = H + 2 * padding, Wp = W + 2 * padding;
  TORCH_CHECK(C == 3, "int8 inference: images must have 3 channels");
  auto codes = at::_empty_affine_quantized({N, C, Hp, Wp}, torch::dtype(torch::kQUInt8), kImage.scale, 0,
                                           at::MemoryFormat::ChannelsLast);
  const float* in = x.data_ptr<float>();
  uint8_t* out = bytes_of(codes);
  const auto levels = static_cast<float>(1 / kImage.scale);
  at::parallel_for(0, N * Hp, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / Hp, y = row % Hp - padding;
      uint8_t* o = out + row * Wp * C;
      for (int64_t xp = 0; xp < Wp; ++xp) {
        const int64_t col = xp - padding;
        const bool inside = y >= 0 && y < H && col >= 0 && col < W;
        for (int64_t c = 0; c < C; ++c) {
          const float v = inside ? in[((n * C + c) * H + y) * W + col] : 0.f;
          // Rounded by adding a half to a non-negative value (std::nearbyint is a call without SSE4.1).
          const float level = std::clamp((v * norm.std[c] + norm.mean[c]) * levels, 0.f, 255.f);
          o[xp * C + c] = static_cast<uint8_t>(level + 0.5f);
        }
      }
    }
  });
  return codes;
}

torch::Tensor quantize(const torch::Tensor& x, const QuantParams& p) {
  return torch::quantize_per_tensor(x.contiguous(at::MemoryFormat::ChannelsLast), p.scale, p.zero_point, torch::kQUInt8);
}

// Runs the inference copy `net` on one input as the int8 path computes it, showing `seen` each quantized
// activation in the order of the ranges (each convolution block's output, a transposed decoder's
// upsampled input) with the block that produced it (null for the others).
void trace_activations(SegNetImpl& net, const torch::Tensor& input,
                       const std::function<void(const torch::Tensor&, ConvBlockImpl*)>& seen) {
  const Stages stages = stages_of(net);
  const bool transposed = net.options().upsampling() == Upsampling::Transposed;
  auto x = input.to(torch::kCPU, torch::kFloat).contiguous(at::MemoryFormat::ChannelsLast);
  std::vector<torch::Tensor> indices;
  std::vector<std::vector<int64_t>> sizes;
  for (auto* stage : stages.encoder) {
    sizes.push_back({x.size(2), x.size(3)});
    for (auto* block : blocks_of(stage->convs)) seen(x = block->forward(x), block);
    torch::Tensor idx;
    std::tie(x, idx) = stage->pool(x);
    indices.push_back(idx);
  }
  for (size_t i = 0; i < stages.decoder.size(); ++i) {
    const size_t s = stages.encoder.size() - 1 - i;
    auto* stage = stages.decoder[i];
    x = stage->upsample(x, indices[s], sizes[s]);
    if (transposed) seen(x, nullptr);
    for (auto* block : blocks_of(stage->convs)) seen(x = block->forward(x), block);
  }
}

}  // namespace

int64_t activation_count(const SegNetOptions& options) {
  const LayerPlan plan = layer_plan(options.model());
  const bool transposed = options.upsampling() == Upsampling::Transposed;
  int64_t count = 0;
  for (const auto& stage : plan.encoder) count += static_cast<int64_t>(stage.size());
  for (const auto& stage : plan.decoder) count += (transposed ? 1 : 0) + static_cast<int64_t>(stage.size());
  return count;
}

QuantParams quant_params(const ActivationRange& range) {
  const double lo = std::min(0.f, range.min), hi = std::max(0.f, range.max);
  if (!(hi - lo > 1e-12)) return {1.0, 0};  // constant zero: any step represents it
  const double scale = (hi - lo) / 255;
  return {scale, std::clamp<int64_t>(std::llround(-lo / scale), 0, 255)};
}

torch::Tensor quantize_weight(const torch::Tensor& weight, int64_t levels) {
  if (levels < 1 || levels > 127) throw OptionError("levels", "must be 1..127, got " + std::to_string(levels));
  const auto w = weight.to(torch::kFloat).contiguous();
  // An all-zero channel still needs a positive step.
  const auto scales = w.abs().amax({1, 2, 3}).div(levels).clamp_min(1e-12).to(torch::kDouble);
  return torch::quantize_per_channel(w, scales, torch::zeros({w.size(0)}, torch::kLong), 0, torch::kQInt8);
}

void equalize_channels(SegNet& model, const std::vector<torch::Tensor>& inputs) {
  if (inputs.empty()) throw OptionError("images", "equalizing channels needs at least one image");
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> peak;  // per block: each channel's largest magnitude, averaged over the images
  {
    SegNet net = inference_copy(model);
    for (size_t image = 0; image < inputs.size(); ++image) {
      size_t k = 0;
      trace_activations(*net, inputs[image], [&](const torch::Tensor& x, ConvBlockImpl* block) {
        if (!block) return;
        const auto m = x.abs().amax({0, 2, 3}).div(static_cast<double>(inputs.size()));
        if (image == 0) peak.push_back(m);
        else peak[k] += m;
        ++k;
      });
    }
  }
  // Each block, in the order the network runs them (as `peak`), and the weight of the convolution that
  // reads its output: the next block's, or the classifier's; null where a transposed convolution reads it.
  const Stages stages = stages_of(*model);
  std::vector<ConvBlockImpl*> blocks;
  std::vector<torch::Tensor*> readers;
  const auto add = [&](torch::nn::Sequential& convs, bool after_upconv) {
    for (auto* block : blocks_of(convs)) {
      if (!readers.empty()) readers.back() = after_upconv ? nullptr : &block->conv->weight;
      after_upconv = false;
      blocks.push_back(block);
      readers.push_back(&stages.classifier->weight);
    }
  };
  for (auto* stage : stages.encoder) add(stage->convs, false);
  for (auto* stage : stages.decoder) add(stage->convs, !stage->upconv.is_empty());
  for (size_t k = 0; k < blocks.size(); ++k) {
    if (!readers[k]) continue;
    // Every channel up to the widest one's peak; a channel that stays (nearly) zero keeps its scale.
    const auto widest = peak[k].max();
    const auto scale = torch::where(peak[k] > widest * 1e-6, widest / peak[k], torch::ones_like(peak[k]));
    blocks[k]->bn->weight.mul_(scale);
    blocks[k]->bn->bias.mul_(scale);
    readers[k]->div_(scale.view({1, -1, 1, 1}));
  }
}

std::vector<ActivationRange> calibrate(const SegNet& model, const std::vector<torch::Tensor>& inputs,
                                       const CalibrationOptions& options) {
  if (!(options.percentile > 50 && options.percentile <= 100))
    throw OptionError("percentile", "must be above 50 and at most 100, got " + std::to_string(options.percentile));
  if (inputs.empty()) throw OptionError("images", "calibration needs at least one image");
  torch::NoGradGuard no_grad;
  SegNet net = inference_copy(model);
  std::vector<ActivationRange> ranges;
  std::vector<double> sum_min, sum_max;  // percentile ranges are averaged over the images
  for (size_t image = 0; image < inputs.size(); ++image) {
    size_t point = 0;
    trace_activations(*net, inputs[image], [&](const torch::Tensor& x, ConvBlockImpl*) {
      const ActivationRange r = range_of(x, options.percentile);
      if (image == 0) {
        ranges.push_back(r);
        sum_min.push_back(r.min), sum_max.push_back(r.max);
      } else {
        auto& seen = ranges[point];
        seen.min = std::min(seen.min, r.min), seen.max = std::max(seen.max, r.max);
        sum_min[point] += r.min, sum_max[point] += r.max;
      }
      ++point;
    });
  }
  if (options.percentile < 100)
    for (size_t p = 0; p < ranges.size(); ++p)
      ranges[p] = {static_cast<float>(sum_min[p] / inputs.size()), static_cast<float>(sum_max[p] / inputs.size())};
  return ranges;
}

struct QuantizedSegNet::Impl {
  SegNet net{nullptr};  // fp32: transposed-convolution upsampling
  Stages stages;
  // The normalisation, and the first convolution's padding, which forward() undoes and applies.
  Normalization norm;
  int64_t image_padding = 0;
  std::vector<std::vector<Int8Convolution>> encoder, decoder;
  std::vector<QuantParams> upsampled;  // per decoder stage, transposed-convolution decoders only
  std::optional<Int8Convolution> classifier;  // fp32 scores
};

QuantizedSegNet::QuantizedSegNet(const SegNet& model, const std::vector<ActivationRange>& ranges,
                                 const Normalization& norm)
    : impl_(std::make_unique<Impl>()) {
  const int64_t expected = activation_count(model->options());
  if (static_cast<int64_t>(ranges.size()) != expected)
    throw Error("int8 inference: the model has " + std::to_string(expected) + " quantized activations but " +
                std::to_string(ranges.size()) + " calibrated ranges");
  torch::NoGradGuard no_grad;
  Impl& m = *impl_;
  m.net = inference_copy(model);
  m.stages = stages_of(*m.net);
  m.norm = norm;
  const auto mean = channel_tensor(norm.mean), std = channel_tensor(norm.std);
  size_t point = 0;
  QuantParams input = kImage;  // each convolution's input: the previous one's output (pooling and unpooling keep it)
  const auto padding_of = [](const torch::nn::Conv2dImpl& conv) {
    return conv.options.dilation()->at(0) * (conv.weight.size(2) / 2);
  };
  auto convs = [&](torch::nn::Sequential& seq) {
    std::vector<Int8Convolution> out;
    for (auto* block : blocks_of(seq)) {
      const auto& conv = *block->conv;
      const int64_t dilation = conv.options.dilation()->at(0);
      int64_t padding = padding_of(conv);
      auto weight = conv.weight.contiguous(), bias = conv.bias.contiguous();
      if (point == 0) {
        // The first convolution reads the image as 0..1 pixel values, which uint8 holds exactly, rather
        // than the normalised image, which one uint8 step rounds by up to about half a grey level (that
        // alone changed 1.5-2% of trained segnets' fp32 predictions): the normalisation moves into its
        // weights and bias, and forward() pads with each channel's mean, the normalised image's zero.
        bias = bias - (weight * (mean / std)).sum({1, 2, 3});
        weight = weight / std;
        m.image_padding = padding;
        padding = 0;
      }
      const QuantParams output = quant_params(ranges[point++]);
      out.emplace_back(weight, bias, Int8ConvolutionOptions{input, output, block->relu, padding, dilation});
      input = output;
    }
    return out;
  };
  const bool transposed = model->options().upsampling() == Upsampling::Transposed;
  for (auto* stage : m.stages.encoder) m.encoder.push_back(convs(stage->convs));
  for (auto* stage : m.stages.decoder) {
    if (transposed) m.upsampled.push_back(input = quant_params(ranges[point++]));
    m.decoder.push_back(convs(stage->convs));
  }
  const auto& classifier = *m.stages.classifier;
  m.classifier.emplace(classifier.weight, classifier.bias,
                       Int8ConvolutionOptions{input, std::nullopt, /*relu=*/false, padding_of(classifier), 1});
}

QuantizedSegNet::~QuantizedSegNet() = default;
QuantizedSegNet::QuantizedSegNet(QuantizedSegNet&&) noexcept = default;

torch::Tensor QuantizedSegNet::forward(const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  Impl& m = *impl_;
  auto run = [](std::vector<Int8Convolution>& convs, torch::Tensor q) {
    for (auto& c : convs) {
      RECORD_FUNCTION("segnet::int8_convolution", std::vector<c10::IValue>());
      q = c.forward(q);
    }
    return q;
  };
  auto q = image_codes(input, m.norm, m.image_padding);
  std::vector<torch::Tensor> where;
  std::vector<std::vector<int64_t>> sizes;
  for (size_t s = 0; s < m.encoder.size(); ++s) {
    RECORD_FUNCTION(stage_name("encoder", s), std::vector<c10::IValue>());
    q = run(m.encoder[s], q);
    sizes.push_back({q.size(2), q.size(3)});  // after the convolutions: the image comes padded
    torch::Tensor w;
    std::tie(q, w) = int8_max_pool(q);
    where.push_back(w);
  }
  for (size_t i = 0; i < m.decoder.size(); ++i) {
    const size_t s = m.encoder.size() - 1 - i;
    RECORD_FUNCTION(stage_name("decoder", s), std::vector<c10::IValue>());
    auto* stage = m.stages.decoder[i];
    if (stage->unpool) q = int8_max_unpool(q, where[s], sizes[s]);
    else if (stage->upconv) q = quantize(stage->upsample(dequantized(q), {}, sizes[s]), m.upsampled[i]);
    else q = stage->upsample(q, {}, sizes[s]);  // bilinear: LibTorch's quantized kernel, same scale
    q = run(m.decoder[i], q);
  }
  RECORD_FUNCTION("classifier", std::vector<c10::IValue>());
  return m.classifier->forward(q);
}

CalibrationReport calibrate_checkpoint(const CheckpointCalibration& o) {
  if (o.checkpoint.empty()) throw OptionError("checkpoint", "is needed: the checkpoint to calibrate");
  if (o.data.empty()) throw OptionError("data", "is needed: the dataset folder");
  if (o.images < 1) throw OptionError("images", "must be at least 1, got " + std::to_string(o.images));
  Checkpoint ck = load_checkpoint(o.checkpoint);
  CalibrationReport report;
  report.out = o.out.empty() ? o.checkpoint.parent_path() / (o.checkpoint.stem().string() + "_int8.pt") : o.out;
  refuse_overwriting_input("out", report.out, {o.checkpoint});
  const auto samples = find_samples(o.data, o.list);
  const auto count = std::min<int64_t>(o.images, static_cast<int64_t>(samples.size()));
  std::vector<torch::Tensor> inputs;
  for (int64_t i = 0; i < count; ++i) {
    const auto& sample = samples[static_cast<size_t>(i * static_cast<int64_t>(samples.size()) / count)];
    inputs.push_back(network_input(read_image(sample.image, ck.info.input_range), ck.info.size, ck.info.norm).unsqueeze(0));
  }
  if (o.equalize) equalize_channels(ck.model, inputs);
  ck.info.activation_ranges = calibrate(ck.model, inputs, o.calibration);
  ck.state.optimizer.reset();
  save_checkpoint(report.out, ck.info, ck.model, nullptr, ck.state);
  report.images = count;
  report.ranges = static_cast<int64_t>(ck.info.activation_ranges.size());
  return report;
}

}  // namespace segnet

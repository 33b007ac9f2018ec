#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/quantize.h>

#include "inference/int8_convolution.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <functional>

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

const uint8_t* bytes_of(const torch::Tensor& q) { return reinterpret_cast<const uint8_t*>(q.data_ptr<c10::quint8>()); }
uint8_t* bytes_of(torch::Tensor& q) { return reinterpret_cast<uint8_t*>(q.data_ptr<c10::quint8>()); }

torch::Tensor empty_like_quantized(const torch::Tensor& q, int64_t height, int64_t width) {
  return at::_empty_affine_quantized({q.size(0), q.size(1), height, width}, q.options(), q.q_scale(), q.q_zero_point(),
                                     at::MemoryFormat::ChannelsLast);
}

// One 2x2 window's maxima over `channels` and the position of each, 0..3 (the first of equal values);
// taps[k] holds position k's values, null where the window is short. Apart from max_pool's parallel
// loop, with `restrict`, so that it vectorises there too.
void pool_window(const uint8_t* const* taps, int64_t channels, uint8_t* __restrict out, uint8_t* __restrict place) {
  std::memcpy(out, taps[0], channels);
  std::memset(place, 0, channels);
  for (uint8_t k = 1; k < 4; ++k) {
    const uint8_t* __restrict t = taps[k];
    if (!t) continue;
    for (int64_t c = 0; c < channels; ++c) {  // branch-free, so that it vectorises
      const bool greater = t[c] > out[c];
      out[c] = greater ? t[c] : out[c];
      place[c] = greater ? k : place[c];
    }
  }
}

// MaxPoolWithIndices on uint8 values (channels-last, same scale, so the same maxima). Each maximum's
// place is kept as its position in its 2x2 window, 0..3 row by row, in one byte rather than the fp32
// path's 8-byte flat index: unpooling reads it back, and the decoder's memory traffic is what is saved.
// Ties go to the first position, as in LibTorch's kernel.
std::pair<torch::Tensor, torch::Tensor> max_pool(const torch::Tensor& input) {
  RECORD_FUNCTION("segnet::int8_max_pool", std::vector<c10::IValue>());
  const auto q = input.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = q.size(0), C = q.size(1), H = q.size(2), W = q.size(3), h = (H + 1) / 2, w = (W + 1) / 2;
  auto pooled = empty_like_quantized(q, h, w);
  auto where = torch::empty({N, h, w, C}, torch::kUInt8);
  const uint8_t* in = bytes_of(q);
  uint8_t* out = bytes_of(pooled);
  uint8_t* place = where.data_ptr<uint8_t>();
  at::parallel_for(0, N * h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / h, y = 2 * (row % h);
      const uint8_t* top = in + (n * H + y) * W * C;
      const uint8_t* bottom = y + 1 < H ? top + W * C : nullptr;  // ceil mode: the last window may be short
      for (int64_t col = 0; col < w; ++col) {
        const int64_t x = 2 * col;
        const bool right = x + 1 < W;
        const uint8_t* taps[4] = {top + x * C, right ? top + (x + 1) * C : nullptr, bottom ? bottom + x * C : nullptr,
                                  bottom && right ? bottom + (x + 1) * C : nullptr};
        pool_window(taps, C, out + (row * w + col) * C, place + (row * w + col) * C);
      }
    }
  });
  return {pooled, where};
}

// MaxUnpool on uint8 values: each value back to its window position, every other position the zero
// point (real 0). Each pooled row owns output rows 2r and 2r+1: it fills them with the zero point,
// then scatters its values into them.
torch::Tensor max_unpool(const torch::Tensor& input, const torch::Tensor& where, const std::vector<int64_t>& size) {
  RECORD_FUNCTION("segnet::int8_max_unpool", std::vector<c10::IValue>());
  const auto q = input.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = q.size(0), C = q.size(1), h = q.size(2), w = q.size(3), H = size[0], W = size[1];
  TORCH_CHECK((H + 1) / 2 == h && (W + 1) / 2 == w, "int8 unpooling: the size must be the pooled input's");
  auto full = empty_like_quantized(q, H, W);
  const auto zero = static_cast<uint8_t>(q.q_zero_point());
  const uint8_t* in = bytes_of(q);
  const uint8_t* place = where.data_ptr<uint8_t>();
  uint8_t* out = bytes_of(full);
  at::parallel_for(0, N * h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / h, y = 2 * (row % h);
      uint8_t* top = out + (n * H + y) * W * C;
      std::memset(top, zero, std::min<int64_t>(2, H - y) * W * C);
      const uint8_t* v = in + row * w * C;
      const uint8_t* a = place + row * w * C;
      for (int64_t col = 0; col < w; ++col, v += C, a += C) {
        uint8_t* window = top + 2 * col * C;
        // Position k is row k / 2, column k % 2 of the window; the places are always inside the image.
        for (int64_t c = 0; c < C; ++c) window[((a[c] >> 1) * W + (a[c] & 1)) * C + c] = v[c];
      }
    }
  });
  return full;
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
  SegNet net{nullptr};  // fp32: the classifier, transposed-convolution upsampling
  Stages stages;
  // The normalisation (channel_tensor), and the first convolution's padding, which forward() applies.
  torch::Tensor mean, std;
  int64_t image_padding = 0;
  std::vector<std::vector<Int8Convolution>> encoder, decoder;
  std::vector<QuantParams> upsampled;  // per decoder stage, transposed-convolution decoders only
};

// The image's 8-bit pixels, scaled to 0..1, are exact as uint8 with this step and no offset.
constexpr QuantParams kImage{1.0 / 255, 0};

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
  m.mean = channel_tensor(norm.mean);
  m.std = channel_tensor(norm.std);
  size_t point = 0;
  QuantParams input = kImage;  // each convolution's input: the previous one's output (pooling and unpooling keep it)
  auto convs = [&](torch::nn::Sequential& seq) {
    std::vector<Int8Convolution> out;
    for (auto* block : blocks_of(seq)) {
      const auto& conv = *block->conv;
      const int64_t dilation = conv.options.dilation()->at(0);
      int64_t padding = dilation * (conv.weight.size(2) / 2);
      auto weight = conv.weight.contiguous(), bias = conv.bias.contiguous();
      if (point == 0) {
        // The first convolution reads the image as 0..1 pixel values, which uint8 holds exactly, rather
        // than the normalised image, which one uint8 step rounds by up to about half a grey level (that
        // alone changed 1.5-2% of trained segnets' fp32 predictions): the normalisation moves into its
        // weights and bias, and forward() pads with each channel's mean, the normalised image's zero.
        bias = bias - (weight * (m.mean / m.std)).sum({1, 2, 3});
        weight = weight / m.std;
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
  const int64_t p = m.image_padding;
  const auto image =
      torch::constant_pad_nd(input.to(torch::kCPU, torch::kFloat), {p, p, p, p}).mul_(m.std).add_(m.mean);
  auto q = quantize(image, kImage);
  std::vector<torch::Tensor> where;
  std::vector<std::vector<int64_t>> sizes;
  for (size_t s = 0; s < m.encoder.size(); ++s) {
    RECORD_FUNCTION(stage_name("encoder", s), std::vector<c10::IValue>());
    q = run(m.encoder[s], q);
    sizes.push_back({q.size(2), q.size(3)});  // after the convolutions: the image comes padded
    torch::Tensor w;
    std::tie(q, w) = max_pool(q);
    where.push_back(w);
  }
  for (size_t i = 0; i < m.decoder.size(); ++i) {
    const size_t s = m.encoder.size() - 1 - i;
    RECORD_FUNCTION(stage_name("decoder", s), std::vector<c10::IValue>());
    auto* stage = m.stages.decoder[i];
    if (stage->unpool) q = max_unpool(q, where[s], sizes[s]);
    else if (stage->upconv) q = quantize(stage->upsample(dequantized(q), {}, sizes[s]), m.upsampled[i]);
    else q = stage->upsample(q, {}, sizes[s]);  // bilinear: LibTorch's quantized kernel, same scale
    q = run(m.decoder[i], q);
  }
  RECORD_FUNCTION("classifier", std::vector<c10::IValue>());
  return m.stages.classifier->forward(dequantized(q));
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

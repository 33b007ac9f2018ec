#include <segnet/error.h>
#include <segnet/model.h>

#include <ATen/record_function.h>
#include <torch/torch.h>

namespace segnet {

namespace {

constexpr double kBayesianDropout = 0.5;  // Bayesian SegNet's rate

torch::nn::Sequential conv_blocks(int64_t in, const std::vector<int64_t>& channels, int64_t kernel, bool relu,
                                  int64_t dilation) {
  torch::nn::Sequential blocks;
  for (int64_t out : channels) {
    blocks->push_back(ConvBlock(ConvBlockOptions(in, out, kernel).relu(relu).dilation(dilation)));
    in = out;
  }
  return blocks;
}

}  // namespace

LayerPlan layer_plan(Model model) {
  switch (model) {
    case Model::SegNet:  // VGG16's 13 convolutions and their mirror image
      return {3,
              {{64, 64}, {128, 128}, {256, 256, 256}, {512, 512, 512}, {512, 512, 512}},
              {{512, 512, 512}, {512, 512, 256}, {256, 256, 128}, {128, 64}, {64}},
              /*decoder_relu=*/true, /*classifier_kernel=*/3};
    case Model::SegNetBasic:  // the paper's smaller variant: no ReLU in the decoder
      return {7, {{64}, {64}, {64}, {64}}, {{64}, {64}, {64}, {64}}, /*decoder_relu=*/false, 1};
    // Bayesian SegNet's "central encoder-decoder" variant: the same layers, with dropout after the
    // deepest stages, where the authors' Caffe models put it.
    case Model::BayesianSegNet: {
      LayerPlan plan = layer_plan(Model::SegNet);
      plan.dropout_stages = 3;
      return plan;
    }
    case Model::BayesianSegNetBasic: {
      LayerPlan plan = layer_plan(Model::SegNetBasic);
      plan.dropout_stages = 2;
      return plan;
    }
  }
  throw Error("unknown model");
}

void check_training_size(Model model, int64_t height, int64_t width) {
  const int64_t stages = static_cast<int64_t>(layer_plan(model).encoder.size()), shrink = int64_t{1} << (stages - 1);
  const auto deepest = [&](int64_t side) { return (side + shrink - 1) / shrink; };
  if (deepest(height) * deepest(width) < 2)
    throw OptionError("size", std::to_string(height) + "x" + std::to_string(width) + " leaves " + to_string(model) +
                                  "'s deepest stage one pixel, too few for batch norm in training: one side must exceed " +
                                  std::to_string(shrink));
}

void validate(const SegNetOptions& options) {
  if (options.num_classes() < 1 || options.num_classes() > kMaxClasses)
    throw OptionError("num_classes", "must be 1.." + std::to_string(kMaxClasses) + ", got " +
                                         std::to_string(options.num_classes()));
  const size_t stages = layer_plan(options.model()).encoder.size();
  if (!options.dilation().empty() && options.dilation().size() != stages)
    throw OptionError("dilation", "takes " + std::to_string(stages) + " values for model '" +
                                      to_string(options.model()) + "', one per encoder stage; got " +
                                      std::to_string(options.dilation().size()));
  for (int64_t d : options.dilation())
    if (d < 1) throw OptionError("dilation", "must be at least 1, got " + std::to_string(d));
}

EncoderStageImpl::EncoderStageImpl(const EncoderStageOptions& o) {
  convs = register_module("convs", conv_blocks(o.in(), o.channels(), o.kernel(), true, o.dilation()));
  pool = register_module("pool", MaxPoolWithIndices());
  if (o.dropout() > 0) dropout = register_module("dropout", McDropout(o.dropout()));
}

std::tuple<torch::Tensor, torch::Tensor> EncoderStageImpl::forward(torch::Tensor x) {
  auto [pooled, indices] = pool(convs->forward(x));
  return {dropout ? dropout(pooled) : pooled, indices};
}

DecoderStageImpl::DecoderStageImpl(const DecoderStageOptions& o) {
  if (o.upsampling() == Upsampling::Indices) unpool = register_module("unpool", MaxUnpool());
  if (o.upsampling() == Upsampling::Transposed)
    upconv = register_module(
        "upconv", torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(o.in(), o.in(), 2).stride(2)));
  convs = register_module("convs", conv_blocks(o.in(), o.channels(), o.kernel(), o.relu(), 1));
  if (o.dropout() > 0) dropout = register_module("dropout", McDropout(o.dropout()));
}

torch::Tensor DecoderStageImpl::forward(torch::Tensor x, const torch::Tensor& indices, std::vector<int64_t> size) {
  x = convs->forward(upsample(x, indices, size));
  return dropout ? dropout(x) : x;
}

torch::Tensor DecoderStageImpl::upsample(const torch::Tensor& x, const torch::Tensor& indices,
                                         const std::vector<int64_t>& size) {
  if (unpool) return unpool(x, indices, size);
  if (upconv) {
    // A 2x2 stride-2 transposed convolution paints each input pixel's own 2x2 window: the same as a
    // 1x1 convolution to 4x the channels then a pixel shuffle, which is how it runs here, because
    // LibTorch 1.13's bf16 CPU transposed convolution returns a wrongly sized output.
    const auto& w = upconv->weight;  // in x out x 2 x 2
    const int64_t out = w.size(1);
    const auto painted = torch::conv2d(x, w.permute({1, 2, 3, 0}).reshape({out * 4, w.size(0), 1, 1}),
                                       upconv->bias.repeat_interleave(4));
    // Ceil-mode pooling left 2h >= H, so a crop restores odd sizes.
    return torch::pixel_shuffle(painted, 2).slice(2, 0, size[0]).slice(3, 0, size[1]);
  }
  namespace F = torch::nn::functional;
  return F::interpolate(x, F::InterpolateFuncOptions().size(size).mode(torch::kBilinear).align_corners(false));
}

SegNetImpl::SegNetImpl(const SegNetOptions& options) : options_(options) {
  validate(options);
  const LayerPlan arch = layer_plan(options.model());
  const int64_t stages = static_cast<int64_t>(arch.encoder.size());
  const std::vector<int64_t> dilation = options.dilation().empty() ? std::vector<int64_t>(stages, 1) : options.dilation();
  int64_t channels = kImageChannels;
  for (int64_t i = 0; i < stages; ++i) {
    const bool dropout = i >= stages - arch.dropout_stages;
    encoder_.push_back(register_module("encoder" + std::to_string(i + 1),
                                       EncoderStage(EncoderStageOptions(channels, arch.encoder[i], arch.kernel)
                                                        .dilation(dilation[i])
                                                        .dropout(dropout ? kBayesianDropout : 0))));
    channels = arch.encoder[i].back();
  }
  for (int64_t i = 0; i < stages; ++i) {  // deepest first
    const bool dropout = i < arch.dropout_stages;
    decoder_.push_back(register_module("decoder" + std::to_string(stages - i),
                                       DecoderStage(DecoderStageOptions(channels, arch.decoder[i], arch.kernel)
                                                        .relu(arch.decoder_relu)
                                                        .upsampling(options.upsampling())
                                                        .dropout(dropout ? kBayesianDropout : 0))));
    channels = arch.decoder[i].back();
  }
  classifier_ = register_module(
      "classifier", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, options.num_classes(), arch.classifier_kernel)
                                          .padding(arch.classifier_kernel / 2)));
}

torch::Tensor SegNetImpl::forward(torch::Tensor x) {
  std::vector<torch::Tensor> indices;
  std::vector<std::vector<int64_t>> sizes;
  for (size_t s = 0; s < encoder_.size(); ++s) {
    RECORD_FUNCTION("encoder" + std::to_string(s + 1), std::vector<c10::IValue>());  // names the profile's rows
    sizes.push_back({x.size(2), x.size(3)});
    torch::Tensor idx;
    std::tie(x, idx) = encoder_[s]->forward(x);
    indices.push_back(idx);
  }
  for (size_t i = 0; i < decoder_.size(); ++i) {
    const size_t s = encoder_.size() - 1 - i;  // the matching encoder stage
    RECORD_FUNCTION("decoder" + std::to_string(s + 1), std::vector<c10::IValue>());
    x = decoder_[i]->forward(x, indices[s], sizes[s]);
  }
  RECORD_FUNCTION("classifier", std::vector<c10::IValue>());
  return classifier_(x);
}

void SegNetImpl::fold_batch_norm() {
  for (auto& m : modules(/*include_self=*/false))
    if (auto* block = m->as<ConvBlockImpl>()) block->fold_batch_norm();
}

void SegNetImpl::set_mc_dropout(bool enabled) {
  for (auto& m : modules(/*include_self=*/false))
    if (auto* dropout = m->as<McDropoutImpl>()) dropout->sample_in_eval = enabled;
}

bool SegNetImpl::has_dropout() const { return layer_plan(options_.model()).dropout_stages > 0; }

SegNet copy_model(const SegNet& source) {
  SegNet copy(source->options());
  torch::NoGradGuard no_grad;
  const auto params = source->named_parameters(), buffers = source->named_buffers();
  for (auto& p : copy->named_parameters()) p.value().copy_(params[p.key()]);
  for (auto& b : copy->named_buffers()) b.value().copy_(buffers[b.key()]);
  return copy;
}

// Unpooling, bilinear interpolation and dropout multiply nothing; dilation spreads a kernel's taps
// without adding any.
int64_t multiply_adds(const SegNetOptions& options, int64_t height, int64_t width) {
  const LayerPlan arch = layer_plan(options.model());
  const bool transposed = options.upsampling() == Upsampling::Transposed;
  int64_t macs = 0, in = kImageChannels, h = height, w = width;
  auto convs = [&](const std::vector<int64_t>& channels, int64_t kernel) {
    for (int64_t out : channels) macs += h * w * in * out * kernel * kernel, in = out;
  };
  std::vector<std::pair<int64_t, int64_t>> sizes;
  for (const auto& stage : arch.encoder) {
    convs(stage, arch.kernel);
    sizes.emplace_back(h, w);
    h = (h + 1) / 2, w = (w + 1) / 2;
  }
  for (size_t i = 0; i < arch.decoder.size(); ++i) {
    if (transposed) macs += h * w * in * in * 2 * 2;  // each input pixel paints its own 2x2 output window
    std::tie(h, w) = sizes[sizes.size() - 1 - i];
    convs(arch.decoder[i], arch.kernel);
  }
  convs({options.num_classes()}, arch.classifier_kernel);
  return macs;
}

}  // namespace segnet

#include <segnet/error.h>
#include <segnet/model.h>

#include <ATen/record_function.h>
#include <torch/torch.h>

namespace segnet {

Architecture architecture(const std::string& name) {
  if (name == "segnet")  // VGG16's 13 convolutions and their mirror image
    return {name, 3,
            {{64, 64}, {128, 128}, {256, 256, 256}, {512, 512, 512}, {512, 512, 512}},
            {{512, 512, 512}, {512, 512, 256}, {256, 256, 128}, {128, 64}, {64}},
            /*decoder_relu=*/true, /*classifier_kernel=*/3};
  if (name == "segnet-basic")  // the paper's smaller variant: no ReLU in the decoder
    return {name, 7, {{64}, {64}, {64}, {64}}, {{64}, {64}, {64}, {64}}, /*decoder_relu=*/false, 1};
  throw Error("unknown model '" + name + "' (expected segnet or segnet-basic)");
}

std::vector<std::string> model_names() { return {"segnet", "segnet-basic"}; }

static torch::nn::Sequential conv_blocks(int64_t in, const std::vector<int64_t>& channels, int64_t kernel, bool relu) {
  torch::nn::Sequential blocks;
  for (int64_t out : channels) {
    blocks->push_back(ConvBlock(ConvBlockOptions(in, out, kernel).relu(relu)));
    in = out;
  }
  return blocks;
}

EncoderStageImpl::EncoderStageImpl(int64_t in, const std::vector<int64_t>& channels, int64_t kernel) {
  convs = register_module("convs", conv_blocks(in, channels, kernel, true));
  pool = register_module("pool", MaxPoolWithIndices());
}

std::tuple<torch::Tensor, torch::Tensor> EncoderStageImpl::forward(torch::Tensor x) { return pool(convs->forward(x)); }

DecoderStageImpl::DecoderStageImpl(int64_t in, const std::vector<int64_t>& channels, int64_t kernel, bool relu) {
  unpool = register_module("unpool", MaxUnpool());
  convs = register_module("convs", conv_blocks(in, channels, kernel, relu));
}

torch::Tensor DecoderStageImpl::forward(torch::Tensor x, const torch::Tensor& indices, std::vector<int64_t> size) {
  return convs->forward(unpool(x, indices, std::move(size)));
}

SegNetImpl::SegNetImpl(const SegNetOptions& options) : options_(options) {
  if (options.num_classes() < 1 || options.num_classes() >= kMaxClasses)
    throw Error("number of classes must be 1.." + std::to_string(kMaxClasses - 1) + ", got " +
                std::to_string(options.num_classes()));
  const Architecture arch = architecture(options.model());
  int64_t channels = options.in_channels();
  for (size_t i = 0; i < arch.encoder.size(); ++i) {
    encoder_.push_back(register_module("encoder" + std::to_string(i + 1),
                                       EncoderStage(channels, arch.encoder[i], arch.kernel)));
    channels = arch.encoder[i].back();
  }
  for (size_t i = 0; i < arch.decoder.size(); ++i) {
    decoder_.push_back(register_module("decoder" + std::to_string(arch.decoder.size() - i),
                                       DecoderStage(channels, arch.decoder[i], arch.kernel, arch.decoder_relu)));
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

int64_t multiply_adds(const SegNetOptions& options, int64_t height, int64_t width) {
  const Architecture arch = architecture(options.model());
  int64_t macs = 0, in = options.in_channels(), h = height, w = width;
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
    std::tie(h, w) = sizes[sizes.size() - 1 - i];
    convs(arch.decoder[i], arch.kernel);
  }
  convs({options.num_classes()}, arch.classifier_kernel);
  return macs;
}

}  // namespace segnet

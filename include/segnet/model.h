#pragma once
// SegNet (Badrinarayanan, Kendall, Cipolla, TPAMI 2017) and SegNet-Basic.
#include <torch/nn.h>

#include <string>
#include <tuple>
#include <vector>

namespace segnet {

// Class ids travel as 8-bit images with 255 reserved for void, so at most 254 classes.
constexpr int64_t kMaxClasses = 255;

// 2x2 stride-2 max pooling that records where each maximum came from.
// Ceil mode: with odd sizes the last row/column still belongs to a window, so no pixel is lost.
class MaxPoolWithIndicesImpl : public torch::nn::Module {
 public:
  // Returns (pooled, indices); indices are flat positions in each input plane.
  std::tuple<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x);
};
TORCH_MODULE(MaxPoolWithIndices);

// Places each value at the position its encoder pool recorded; everything else is zero.
class MaxUnpoolImpl : public torch::nn::Module {
 public:
  // `size` is the encoder's pre-pooling height and width, so odd sizes come back exactly.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& indices, std::vector<int64_t> size);
};
TORCH_MODULE(MaxUnpool);

struct ConvBlockOptions {
  ConvBlockOptions(int64_t in, int64_t out, int64_t kernel) : in_(in), out_(out), kernel_(kernel) {}
  TORCH_ARG(int64_t, in);
  TORCH_ARG(int64_t, out);
  TORCH_ARG(int64_t, kernel);
  TORCH_ARG(bool, relu) = true;
};

// Convolution ("same" padding) + batch norm (+ ReLU).
class ConvBlockImpl : public torch::nn::Module {
 public:
  explicit ConvBlockImpl(const ConvBlockOptions& options);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  bool relu;
};
TORCH_MODULE(ConvBlock);

// The layer plan of a network: channels of each stage's convolutions, outermost stage first.
struct Architecture {
  std::string name;
  int64_t kernel;
  std::vector<std::vector<int64_t>> encoder;  // per stage, output channels of each conv
  std::vector<std::vector<int64_t>> decoder;  // per stage, deepest first
  bool decoder_relu;
  int64_t classifier_kernel;
};

// "segnet" or "segnet-basic"; anything else is an Error.
Architecture architecture(const std::string& name);
std::vector<std::string> model_names();

struct SegNetOptions {
  SegNetOptions(std::string model, int64_t num_classes) : model_(std::move(model)), num_classes_(num_classes) {}
  TORCH_ARG(std::string, model);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(int64_t, in_channels) = 3;
};

class EncoderStageImpl : public torch::nn::Module {
 public:
  EncoderStageImpl(int64_t in, const std::vector<int64_t>& channels, int64_t kernel);
  // Returns (pooled, pool indices); the pre-pooling size is the input's.
  std::tuple<torch::Tensor, torch::Tensor> forward(torch::Tensor x);

  torch::nn::Sequential convs;
  MaxPoolWithIndices pool;
};
TORCH_MODULE(EncoderStage);

class DecoderStageImpl : public torch::nn::Module {
 public:
  DecoderStageImpl(int64_t in, const std::vector<int64_t>& channels, int64_t kernel, bool relu);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& indices, std::vector<int64_t> size);

  MaxUnpool unpool;
  torch::nn::Sequential convs;
};
TORCH_MODULE(DecoderStage);

// Input N x C x H x W (any H, W) -> class logits N x classes x H x W.
class SegNetImpl : public torch::nn::Module {
 public:
  explicit SegNetImpl(const SegNetOptions& options);
  torch::Tensor forward(torch::Tensor x);

  const SegNetOptions& options() const { return options_; }

 private:
  SegNetOptions options_;
  std::vector<EncoderStage> encoder_;
  std::vector<DecoderStage> decoder_;
  torch::nn::Conv2d classifier_{nullptr};
};
TORCH_MODULE(SegNet);

int64_t parameter_count(torch::nn::Module& module);

}  // namespace segnet

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
// Runs on a dedicated CPU kernel for fp32 and bf16, in NCHW or channels-last.
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
  // For inference: scales the convolution by batch norm's running statistics, which then drops out.
  void fold_batch_norm();

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  bool relu;

 private:
  bool folded_ = false;
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
  // Inference only: folds every batch norm into its convolution.
  void fold_batch_norm();

  const SegNetOptions& options() const { return options_; }

 private:
  SegNetOptions options_;
  std::vector<EncoderStage> encoder_;
  std::vector<DecoderStage> decoder_;
  torch::nn::Conv2d classifier_{nullptr};
};
TORCH_MODULE(SegNet);

int64_t parameter_count(torch::nn::Module& module);

// Convolution multiply-adds of one forward pass on one H x W image.
int64_t multiply_adds(const SegNetOptions& options, int64_t height, int64_t width);

// Stores 4-D parameters channels-last (NHWC), the layout oneDNN's convolutions are fastest in.
void to_channels_last(torch::nn::Module& module);

}  // namespace segnet

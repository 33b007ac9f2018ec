#pragma once
// SegNet (Badrinarayanan, Kendall, Cipolla, TPAMI 2017) and SegNet-Basic.
#include <segnet/choices.h>

#include <torch/nn.h>

#include <string>
#include <tuple>
#include <vector>

namespace segnet {

// Class ids travel as 8-bit images with room for a void id after the classes (the default void is the
// number of classes) and 255 reserved for void.
constexpr int64_t kMaxClasses = 254;

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
  TORCH_ARG(int64_t, dilation) = 1;
};

// Convolution ("same" padding, also when dilated) + batch norm (+ ReLU).
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

// Dropout that can keep sampling in eval mode: Monte Carlo dropout (Bayesian SegNet) wants batch
// norm's running statistics but a fresh dropout mask on every pass.
class McDropoutImpl : public torch::nn::Module {
 public:
  explicit McDropoutImpl(double p) : p(p) {}
  torch::Tensor forward(const torch::Tensor& x);

  double p;
  bool sample_in_eval = false;
};
TORCH_MODULE(McDropout);

// The layer plan of a network: channels of each stage's convolutions, outermost stage first.
struct LayerPlan {
  int64_t kernel;
  std::vector<std::vector<int64_t>> encoder;  // per stage, output channels of each conv
  std::vector<std::vector<int64_t>> decoder;  // per stage, deepest first
  bool decoder_relu;
  int64_t classifier_kernel;
  // Bayesian SegNet: dropout on the outputs of this many of the deepest encoder and decoder stages.
  int64_t dropout_stages = 0;
};
LayerPlan layer_plan(Model model);

// Batch norm in training needs more than one value per channel, so a training size must leave the
// deepest stage (the input divided by 2^(stages - 1), rounded up) more than one pixel: an OptionError
// ("size") otherwise.
void check_training_size(Model model, int64_t height, int64_t width);

// The networks take RGB images.
constexpr int64_t kImageChannels = 3;

struct SegNetOptions {
  SegNetOptions(Model model, int64_t num_classes) : model_(model), num_classes_(num_classes) {}
  TORCH_ARG(Model, model);
  TORCH_ARG(int64_t, num_classes);  // output channels, 1..254: 1 for binary segmentation
  TORCH_ARG(Upsampling, upsampling) = Upsampling::Indices;
  // Dilation of the convolutions of each encoder stage, one per stage (>= 1); empty means all 1.
  TORCH_ARG(std::vector<int64_t>, dilation) = {};
};
// Throws OptionError ("num_classes", "dilation") for options no network can be built with.
void validate(const SegNetOptions& options);

struct EncoderStageOptions {
  EncoderStageOptions(int64_t in, std::vector<int64_t> channels, int64_t kernel)
      : in_(in), channels_(std::move(channels)), kernel_(kernel) {}
  TORCH_ARG(int64_t, in);
  TORCH_ARG(std::vector<int64_t>, channels);  // output channels of each conv
  TORCH_ARG(int64_t, kernel);
  TORCH_ARG(int64_t, dilation) = 1;
  TORCH_ARG(double, dropout) = 0;  // probability, on the pooled output; 0 = no dropout
};

class EncoderStageImpl : public torch::nn::Module {
 public:
  explicit EncoderStageImpl(const EncoderStageOptions& options);
  // Returns (pooled, pool indices); the pre-pooling size is the input's.
  std::tuple<torch::Tensor, torch::Tensor> forward(torch::Tensor x);

  torch::nn::Sequential convs;
  MaxPoolWithIndices pool;
  McDropout dropout{nullptr};
};
TORCH_MODULE(EncoderStage);

struct DecoderStageOptions {
  DecoderStageOptions(int64_t in, std::vector<int64_t> channels, int64_t kernel)
      : in_(in), channels_(std::move(channels)), kernel_(kernel) {}
  TORCH_ARG(int64_t, in);
  TORCH_ARG(std::vector<int64_t>, channels);  // output channels of each conv
  TORCH_ARG(int64_t, kernel);
  TORCH_ARG(bool, relu) = true;
  TORCH_ARG(Upsampling, upsampling) = Upsampling::Indices;
  TORCH_ARG(double, dropout) = 0;  // probability, on the stage's output; 0 = no dropout
};

class DecoderStageImpl : public torch::nn::Module {
 public:
  explicit DecoderStageImpl(const DecoderStageOptions& options);
  // `indices` and `size` come from the matching encoder stage; `size` is its pre-pooling height and width.
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& indices, std::vector<int64_t> size);

  // The upsampler options.upsampling names; bilinear interpolation needs neither.
  MaxUnpool unpool{nullptr};
  torch::nn::ConvTranspose2d upconv{nullptr};
  torch::nn::Sequential convs;
  McDropout dropout{nullptr};

  // Back to the encoder stage's resolution; public for the int8 path (quantize.h), which runs it in fp32.
  torch::Tensor upsample(const torch::Tensor& x, const torch::Tensor& indices, const std::vector<int64_t>& size);
};
TORCH_MODULE(DecoderStage);

// Input N x C x H x W (any H, W) -> class logits N x classes x H x W.
class SegNetImpl : public torch::nn::Module {
 public:
  explicit SegNetImpl(const SegNetOptions& options);
  torch::Tensor forward(torch::Tensor x);
  // Inference only: folds every batch norm into its convolution.
  void fold_batch_norm();
  // Bayesian models: keep dropout sampling in eval mode (Monte Carlo dropout). No-op without dropout.
  void set_mc_dropout(bool enabled);
  bool has_dropout() const;

  const SegNetOptions& options() const { return options_; }

 private:
  SegNetOptions options_;
  std::vector<EncoderStage> encoder_;
  std::vector<DecoderStage> decoder_;
  torch::nn::Conv2d classifier_{nullptr};
};
TORCH_MODULE(SegNet);

int64_t parameter_count(torch::nn::Module& module);

// A new model with the options, weights and batch-norm statistics of `source`.
SegNet copy_model(const SegNet& source);

// Convolution multiply-adds of one forward pass on one H x W image.
int64_t multiply_adds(const SegNetOptions& options, int64_t height, int64_t width);

// Stores 4-D parameters in `format`: channels-last (NHWC) or contiguous (NCHW). Convolutions run in
// the layout of their weights and input; fastest_memory_format() (segnet/runtime.h) says which is faster.
void to_memory_format(torch::nn::Module& module, at::MemoryFormat format);

}  // namespace segnet

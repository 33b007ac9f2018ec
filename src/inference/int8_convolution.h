#pragma once
// One convolution of int8 inference: uint8 activations, int8 weights per output channel, 32-bit sums,
// bias, optional ReLU, uint8 output (or fp32, for the classifier's scores). It runs on oneDNN, the
// library LibTorch's own convolutions call, directly rather than through LibTorch's quantized ops: on
// processors without VNNI those ops sum pairs of products in 16 bits, which saturate, and were off by
// up to 24 output steps (Zen 3, 2026-12-06).
#include <segnet/quantize.h>

#include <torch/types.h>

#include <memory>
#include <optional>

namespace segnet {

// The uint8 codes of a quint8 tensor.
inline const uint8_t* bytes_of(const torch::Tensor& q) { return reinterpret_cast<const uint8_t*>(q.data_ptr<c10::quint8>()); }
inline uint8_t* bytes_of(torch::Tensor& q) { return reinterpret_cast<uint8_t*>(q.data_ptr<c10::quint8>()); }

struct Int8ConvolutionOptions {
  QuantParams input;   // the uint8 input's step and zero point
  // The uint8 output's step and zero point; none for fp32 output, the sums' exact values (up to fp32
  // rounding) with the bias added, which the classifier gives so that close scores keep their order.
  std::optional<QuantParams> output;
  bool relu = true;
  int64_t padding = 0;   // on every side, in input pixels, of real value 0
  int64_t dilation = 1;  // stride is 1
};

class Int8Convolution {
 public:
  // `weight` (out x in x k x k, fp32) is quantized here, with weight_levels(); `bias` stays fp32.
  Int8Convolution(const torch::Tensor& weight, const torch::Tensor& bias, const Int8ConvolutionOptions& options);
  ~Int8Convolution();
  Int8Convolution(Int8Convolution&&) noexcept;

  // quint8 N x in x H x W with the options' input step and zero point -> channels-last output: quint8
  // with the output's step and zero point, the exact integer convolution's values rounded once, or fp32.
  // Several threads may call it at once.
  torch::Tensor forward(const torch::Tensor& input);

  // The largest weight magnitude the convolutions use: 127 where the processor sums uint8 x int8
  // products in 32 bits (AVX-512 VNNI), 63 elsewhere, where a pair of products is summed in 16 bits
  // first (255 x 63 x 2 fits; 255 x 127 x 2 does not). Both are exact; 63 rounds the weights twice as coarsely.
  // (127 weight levels with activations of 127 steps, PyTorch's `reduce_range`, agreed less with fp32.)
  static int64_t weight_levels();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace segnet

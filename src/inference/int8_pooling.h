#pragma once
// Max pooling and SegNet's index unpooling for int8 inference, on the uint8 values themselves: they
// only move values, so the scale stays and nothing is rounded. Each maximum's place is kept as its
// position in its 2x2 window, 0..3 row by row, in one byte rather than the fp32 path's 8-byte flat
// index: unpooling reads it back, and the decoder's memory traffic is what is saved.
#include <torch/types.h>

#include <utility>
#include <vector>

namespace segnet {

// 2x2 max pooling, stride 2, ceil mode, of a quint8 N x C x H x W tensor -> the channels-last maxima
// (same step and zero point) and their places (N x ceil(H/2) x ceil(W/2) x C uint8, 0..3). Ties go to
// the first position, as in LibTorch's kernel.
std::pair<torch::Tensor, torch::Tensor> int8_max_pool(const torch::Tensor& input);

// The inverse: each value back to its place in an output of `size` (H, W; the pooled input's), every
// other position the zero point (real 0).
torch::Tensor int8_max_unpool(const torch::Tensor& input, const torch::Tensor& where, const std::vector<int64_t>& size);

}  // namespace segnet

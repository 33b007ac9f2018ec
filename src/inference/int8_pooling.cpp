#include "inference/int8_pooling.h"

#include "inference/int8_convolution.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/torch.h>

#include <array>
#include <cstring>

namespace segnet {

namespace {

torch::Tensor empty_like_quantized(const torch::Tensor& q, int64_t height, int64_t width) {
  return at::_empty_affine_quantized({q.size(0), q.size(1), height, width}, q.options(), q.q_scale(), q.q_zero_point(),
                                     at::MemoryFormat::ChannelsLast);
}

// The four positions of the 2x2 window at column x of rows `top` and `bottom` (channels-last rows of
// width W): row by row, null where the window is short (ceil mode: the last row or column may be).
template <typename Byte>
std::array<Byte*, 4> window_taps(Byte* top, Byte* bottom, int64_t x, int64_t W, int64_t C) {
  const bool right = x + 1 < W;
  return {top + x * C, right ? top + (x + 1) * C : nullptr, bottom ? bottom + x * C : nullptr,
          bottom && right ? bottom + (x + 1) * C : nullptr};
}

// One 2x2 window's maxima over `channels` and the position of each, 0..3 (the first of equal values);
// taps[k] holds position k's values, null where the window is short. Apart from int8_max_pool's parallel
// loop, with `restrict`, so that it vectorises there too.
void pool_window(const std::array<const uint8_t*, 4>& taps, int64_t channels, uint8_t* __restrict out, uint8_t* __restrict place) {
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

// One pooled pixel's window back: at each position k, 0..3, the values whose place is k and the zero
// point elsewhere; taps[k] is position k's output, null where the window is short (no place points
// there). Apart from int8_max_unpool's parallel loop, with `restrict`, so that it vectorises there too.
void unpool_window(const uint8_t* __restrict values, const uint8_t* __restrict place, int64_t channels, uint8_t zero,
                   const std::array<uint8_t*, 4>& taps) {
  for (uint8_t k = 0; k < 4; ++k) {
    uint8_t* __restrict t = taps[k];
    if (!t) continue;
    for (int64_t c = 0; c < channels; ++c) {  // as a mask, which GCC vectorises (not the ?: on a load)
      const auto here = static_cast<uint8_t>(-static_cast<int>(place[c] == k));
      t[c] = static_cast<uint8_t>((values[c] & here) | (zero & ~here));
    }
  }
}

}  // namespace

std::pair<torch::Tensor, torch::Tensor> int8_max_pool(const torch::Tensor& input) {
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
      const uint8_t* bottom = y + 1 < H ? top + W * C : nullptr;
      for (int64_t col = 0; col < w; ++col)
        pool_window(window_taps(top, bottom, 2 * col, W, C), C, out + (row * w + col) * C, place + (row * w + col) * C);
    }
  });
  return {pooled, where};
}

torch::Tensor int8_max_unpool(const torch::Tensor& input, const torch::Tensor& where, const std::vector<int64_t>& size) {
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
      uint8_t* bottom = y + 1 < H ? top + W * C : nullptr;
      for (int64_t col = 0; col < w; ++col)
        unpool_window(in + (row * w + col) * C, place + (row * w + col) * C, C, zero, window_taps(top, bottom, 2 * col, W, C));
    }
  });
  return full;
}

}  // namespace segnet

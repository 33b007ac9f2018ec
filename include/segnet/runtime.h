#pragma once
// Process-wide settings shared by every front end: threads, devices, numeric precision.
#include <segnet/choices.h>

#include <torch/types.h>

namespace segnet {

// n = 0: OMP_NUM_THREADS when set (torchrun sets it for several processes per machine), else all
// cores (LibTorch picks 1 on some machines otherwise). An OptionError ("threads") below 0 or above
// the machine's cores.
void set_threads(int n);

// An OptionError ("device") unless this LibTorch can run on `device` (the CPU, or an available CUDA device).
void check_device(torch::Device device);

// Whether bf16 convolutions run at speed on `device`: on CUDA devices, and on processors with AVX-512
// (oneDNN's bf16 kernels; natively with AVX-512 BF16). Elsewhere LibTorch falls back to a generic
// kernel, many times slower than fp32 (see the README's Speed section).
bool has_fast_bf16(torch::Device device);

// The layout convolutions run fastest in on `device` at `precision`: channels-last, except fp32 on
// processors without AVX-512, where oneDNN's kernels for the plain layout (NCHW) were faster (Zen 3,
// segnet: 1.2-1.3 times in inference, 1.3-1.6 in training; the README's Speed section).
at::MemoryFormat fastest_memory_format(torch::Device device, Precision precision);

// While alive, convolutions run in bf16 on `device` (autocast); a no-op for fp32. Clears autocast's
// cache of converted weights on exit, so the next step sees the optimizer's updates.
class AutocastGuard {
 public:
  AutocastGuard(Precision precision, torch::Device device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_;
  bool cuda_;
};

}  // namespace segnet

#pragma once
// Process-wide settings shared by every front end: threads, devices, numeric precision.
#include <segnet/choices.h>

#include <torch/types.h>

namespace segnet {

// n <= 0: OMP_NUM_THREADS when set (torchrun sets it for several processes per machine), else all
// cores (LibTorch picks 1 on some machines otherwise).
void set_threads(int n);

// An OptionError ("device") unless this LibTorch can run on `device` (the CPU, or an available CUDA device).
void check_device(torch::Device device);

// Whether bf16 convolutions run at speed on `device`: on CUDA devices, and on processors with AVX-512
// (oneDNN's bf16 kernels; natively with AVX-512 BF16). Elsewhere LibTorch falls back to a generic
// kernel, many times slower than fp32 (see the README's Speed section).
bool has_fast_bf16(torch::Device device);

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

#pragma once
// Process-wide settings shared by every front end: threads, devices, numeric precision.
#include <torch/types.h>

#include <string>

namespace segnet {

// Uses all cores when n <= 0 (LibTorch picks 1 on some machines otherwise).
void set_threads(int n);

// "cpu", "cuda" or "cuda:K"; an unavailable device is an Error.
torch::Device parse_device(const std::string& name);

// fp32, or bf16 compute with fp32 weights (training) / bf16 weights (inference).
enum class Precision { Float32, BFloat16 };
Precision parse_precision(const std::string& name);  // "fp32" | "bf16"
std::string to_string(Precision precision);

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

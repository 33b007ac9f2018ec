#include <segnet/error.h>
#include <segnet/runtime.h>

#include <ATen/autocast_mode.h>
#include <opencv2/core.hpp>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <thread>

namespace segnet {

void set_threads(int n) {
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
  cv::setNumThreads(n);
}

torch::Device parse_device(const std::string& name) {
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(name);
  } catch (const c10::Error&) {
    throw Error("--device: '" + name + "' is not a device (expected cpu or cuda[:K])");
  }
  if (device.is_cuda() && !torch::cuda::is_available())
    throw Error("--device: '" + name + "' requested but this LibTorch has no usable CUDA device");
  if (!device.is_cpu() && !device.is_cuda()) throw Error("--device: '" + name + "' is not supported");
  return device;
}

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::Float32;
  if (name == "bf16") return Precision::BFloat16;
  throw Error("--precision: '" + name + "' is not fp32 or bf16");
}

std::string to_string(Precision precision) { return precision == Precision::BFloat16 ? "bf16" : "fp32"; }

AutocastGuard::AutocastGuard(Precision precision, torch::Device device)
    : enabled_(precision == Precision::BFloat16), cuda_(device.is_cuda()) {
  if (!enabled_) return;
  if (cuda_) {
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  if (cuda_) at::autocast::set_enabled(false);
  else at::autocast::set_cpu_enabled(false);
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
}

}  // namespace segnet

#include <segnet/error.h>
#include <segnet/runtime.h>

#include "common/cpu_isa.h"

#include <ATen/autocast_mode.h>
#include <opencv2/core.hpp>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <cstdlib>
#include <thread>

namespace segnet {

void set_threads(int n) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (n < 0) throw OptionError("threads", "must be 0 (all cores) or more, got " + std::to_string(n));
  // More threads than cores only make the cores take turns: on 2 cores, a 0.3 s training run took 7.5 s
  // with 64 threads and more than a minute with 1000.
  if (n > cores)
    throw OptionError("threads", std::to_string(n) + " is more than this machine's " + std::to_string(cores) + " cores");
  // Launchers that start several processes per machine (torchrun) give each its share this way.
  if (const char* omp = std::getenv("OMP_NUM_THREADS"); n == 0 && omp) n = std::atoi(omp);
  if (n <= 0) n = cores;
  torch::set_num_threads(n);
  cv::setNumThreads(n);
}

void check_device(torch::Device device) {
  if (device.is_cuda() && !torch::cuda::is_available())
    throw OptionError("device", "'" + device.str() + "' requested, but this LibTorch has no usable CUDA device");
  if (device.is_cuda() && device.has_index() && device.index() >= static_cast<int>(torch::cuda::device_count()))
    throw OptionError("device", "'" + device.str() + "' does not exist (" + std::to_string(torch::cuda::device_count()) +
                                    " CUDA devices)");
  if (!device.is_cpu() && !device.is_cuda()) throw OptionError("device", "'" + device.str() + "' is not supported");
}

namespace {
// Asked once: the training step and the Segmenter ask for the layout on every call.
bool cpu_has_avx512() {
  static const bool has = cpu_has(dnnl::cpu_isa::avx512_core);
  return has;
}
}  // namespace

bool has_fast_bf16(torch::Device device) { return device.is_cuda() || cpu_has_avx512(); }

at::MemoryFormat fastest_memory_format(torch::Device device, Precision precision) {
  if (device.is_cpu() && precision == Precision::Float32 && !cpu_has_avx512()) return at::MemoryFormat::Contiguous;
  return at::MemoryFormat::ChannelsLast;
}

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

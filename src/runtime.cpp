#include <segnet/error.h>
#include <segnet/runtime.h>

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

}  // namespace segnet

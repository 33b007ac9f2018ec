#include <segnet/model.h>

#include <torch/torch.h>

namespace segnet {

std::tuple<torch::Tensor, torch::Tensor> MaxPoolWithIndicesImpl::forward(const torch::Tensor& x) {
  return torch::max_pool2d_with_indices(x, /*kernel_size=*/{2, 2}, /*stride=*/{2, 2}, /*padding=*/{0, 0},
                                        /*dilation=*/{1, 1}, /*ceil_mode=*/true);
}

torch::Tensor MaxUnpoolImpl::forward(const torch::Tensor& x, const torch::Tensor& indices, std::vector<int64_t> size) {
  return torch::max_unpool2d(x, indices, size);
}

ConvBlockImpl::ConvBlockImpl(const ConvBlockOptions& o) : relu(o.relu()) {
  conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in(), o.out(), o.kernel())
                                                       .padding(o.kernel() / 2)));
  bn = register_module("bn", torch::nn::BatchNorm2d(o.out()));
}

torch::Tensor ConvBlockImpl::forward(torch::Tensor x) {
  x = bn(conv(x));
  return relu ? torch::relu_(x) : x;
}

int64_t parameter_count(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace segnet

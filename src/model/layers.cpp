#include <segnet/model.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/torch.h>

namespace segnet {

namespace {

// LibTorch 1.13's max_unpool2d has no bf16 kernel on the CPU, so unpooling has its own: a scatter
// (forward) and a gather (backward) over the 2x2 windows, in NCHW or channels-last.
// Work is split so that threads never touch the same memory: channels-last by pooled row (each owns
// output rows 2r and 2r+1, which it zeroes and fills), NCHW by (image, channel) plane.
enum class Direction { Scatter, Gather };

// `pooled` (N,C,h,w) and `full` (N,C,H,W) share one memory format; `indices` are flat h*W+w positions
// in each full plane, as max_pool2d_with_indices records them, always inside their own 2x2 window.
void unpool_kernel(Direction direction, const torch::Tensor& pooled, const torch::Tensor& indices,
                   const torch::Tensor& full) {
  const int64_t N = pooled.size(0), C = pooled.size(1), h = pooled.size(2), w = pooled.size(3);
  const int64_t H = full.size(2), W = full.size(3);
  const bool channels_last = full.is_contiguous(at::MemoryFormat::ChannelsLast) && !full.is_contiguous();
  const int64_t* idx = indices.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, pooled.scalar_type(), "segnet_max_unpool", [&] {
    scalar_t* small = pooled.data_ptr<scalar_t>();
    scalar_t* big = full.data_ptr<scalar_t>();
    if (channels_last) {  // [n][y][x][c]
      at::parallel_for(0, N * h, 1, [&](int64_t begin, int64_t end) {
        for (int64_t nr = begin; nr < end; ++nr) {
          const int64_t n = nr / h, r = nr % h;
          scalar_t* plane = big + n * H * W * C;
          if (direction == Direction::Scatter) {
            const int64_t rows = std::min<int64_t>(2, H - 2 * r);
            std::fill_n(plane + 2 * r * W * C, rows * W * C, scalar_t(0));
          }
          for (int64_t q = 0; q < w; ++q) {
            const int64_t o = (nr * w + q) * C;
            const int64_t* i = idx + o;
            scalar_t* s = small + o;
            if (direction == Direction::Scatter) {
              for (int64_t c = 0; c < C; ++c) plane[i[c] * C + c] = s[c];
            } else {
              for (int64_t c = 0; c < C; ++c) s[c] = plane[i[c] * C + c];
            }
          }
        }
      });
    } else {  // [n][c][y][x]
      at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
        for (int64_t nc = begin; nc < end; ++nc) {
          scalar_t* plane = big + nc * H * W;
          const int64_t offset = nc * h * w;
          if (direction == Direction::Scatter) std::fill_n(plane, H * W, scalar_t(0));
          for (int64_t p = 0; p < h * w; ++p) {
            scalar_t& at = plane[idx[offset + p]];
            if (direction == Direction::Scatter) at = small[offset + p];
            else small[offset + p] = at;
          }
        }
      });
    }
  });
}

at::MemoryFormat format_of(const torch::Tensor& t) {
  return t.is_contiguous(at::MemoryFormat::ChannelsLast) && !t.is_contiguous() ? at::MemoryFormat::ChannelsLast
                                                                               : at::MemoryFormat::Contiguous;
}

torch::Tensor scatter_to_full(const torch::Tensor& x, const torch::Tensor& indices, int64_t height, int64_t width) {
  RECORD_FUNCTION("segnet::unpool_scatter", std::vector<c10::IValue>());
  if (!x.device().is_cpu()) return torch::max_unpool2d(x, indices, {height, width});  // CUDA has its own
  const auto format = format_of(x);
  auto full = torch::empty({x.size(0), x.size(1), height, width}, x.options().memory_format(format));
  unpool_kernel(Direction::Scatter, x.contiguous(format), indices.contiguous(format), full);
  return full;
}

torch::Tensor gather_from_full(const torch::Tensor& full, const torch::Tensor& indices) {
  RECORD_FUNCTION("segnet::unpool_gather", std::vector<c10::IValue>());
  if (!full.device().is_cpu()) return full.flatten(2).gather(2, indices.flatten(2)).view(indices.sizes());
  const auto format = format_of(indices);
  auto small = torch::empty(indices.sizes(), full.options().memory_format(format));
  unpool_kernel(Direction::Gather, small, indices, full.contiguous(format));
  return small;
}

class MaxUnpoolFunction : public torch::autograd::Function<MaxUnpoolFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& indices, int64_t height, int64_t width) {
    ctx->save_for_backward({indices});
    return scatter_to_full(x, indices, height, width);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto indices = ctx->get_saved_variables()[0];
    return {gather_from_full(grads[0], indices.contiguous(format_of(grads[0]))), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

std::tuple<torch::Tensor, torch::Tensor> MaxPoolWithIndicesImpl::forward(const torch::Tensor& x) {
  return torch::max_pool2d_with_indices(x, /*kernel_size=*/{2, 2}, /*stride=*/{2, 2}, /*padding=*/{0, 0},
                                        /*dilation=*/{1, 1}, /*ceil_mode=*/true);
}

torch::Tensor MaxUnpoolImpl::forward(const torch::Tensor& x, const torch::Tensor& indices, std::vector<int64_t> size) {
  TORCH_CHECK(size.size() == 2 && x.size(2) == (size[0] + 1) / 2 && x.size(3) == (size[1] + 1) / 2,
              "MaxUnpool: the output size must be the one its MaxPoolWithIndices received");
  return MaxUnpoolFunction::apply(x, indices, size[0], size[1]);
}

ConvBlockImpl::ConvBlockImpl(const ConvBlockOptions& o) : relu(o.relu()) {
  conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in(), o.out(), o.kernel())
                                                       .dilation(o.dilation())
                                                       .padding(o.dilation() * (o.kernel() / 2))));
  bn = register_module("bn", torch::nn::BatchNorm2d(o.out()));
}

torch::Tensor ConvBlockImpl::forward(torch::Tensor x) {
  x = conv(x);
  if (!folded_) x = bn(x);
  return relu ? torch::relu_(x) : x;
}

void ConvBlockImpl::fold_batch_norm() {
  TORCH_CHECK(!folded_, "batch norm already folded");
  torch::NoGradGuard no_grad;
  const auto scale = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
  conv->weight.mul_(scale.view({-1, 1, 1, 1}));
  conv->bias.sub_(bn->running_mean).mul_(scale).add_(bn->bias);
  folded_ = true;
}

torch::Tensor McDropoutImpl::forward(const torch::Tensor& x) {
  return torch::dropout(x, p, is_training() || sample_in_eval);  // elementwise, as Bayesian SegNet's Caffe models
}

int64_t parameter_count(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

void to_memory_format(torch::nn::Module& module, at::MemoryFormat format) {
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(format));
}

}  // namespace segnet

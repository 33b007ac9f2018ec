#include "inference/int8_convolution.h"

#include "common/cpu_isa.h"

#include <segnet/error.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <torch/torch.h>

#include <array>
#include <map>
#include <mutex>
#include <unordered_map>

namespace segnet {

namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

}  // namespace

struct Int8Convolution::Impl {
  Int8ConvolutionOptions options;
  int64_t out_channels = 0, in_channels = 0, kernel = 0;
  torch::Tensor weight;       // int8, out x in x k x k
  std::vector<float> bias;    // in the 32-bit sums' unit: bias / (input step x weight step)
  std::vector<float> scales;  // per output channel, from sums to output steps (fp32 output: to real values)
  std::vector<int32_t> input_zero;
  struct Prepared {
    dnnl::convolution_forward conv;
    dnnl::memory::desc src, bias, dst, scratchpad;
    dnnl::memory weight;  // in the layout the convolution chose
  };
  std::mutex mutex;
  std::map<std::array<int64_t, 3>, Prepared> prepared;  // by N, H, W

  const Prepared& prepare(int64_t n, int64_t h, int64_t w);
};

int64_t Int8Convolution::weight_levels() {
  // AVX-512 VNNI sums uint8 x int8 products in 32 bits. (oneDNN 2.6 also knows AVX-VNNI, but whether its
  // int8 kernels use it on such processors is not checked here, so they get the safe weights.)
  static const int64_t levels = cpu_has(dnnl::cpu_isa::avx512_core_vnni) ? 127 : 63;
  return levels;
}

Int8Convolution::Int8Convolution(const torch::Tensor& weight, const torch::Tensor& bias,
                                 const Int8ConvolutionOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.options = options;
  m.out_channels = weight.size(0), m.in_channels = weight.size(1), m.kernel = weight.size(2);
  const auto q = quantize_weight(weight, weight_levels());
  m.weight = q.int_repr().contiguous();
  const auto steps = q.q_per_channel_scales().to(torch::kDouble);
  const auto b = bias.to(torch::kDouble).contiguous();
  for (int64_t c = 0; c < m.out_channels; ++c) {
    const double sum_step = options.input.scale * steps[c].item<double>();
    m.bias.push_back(static_cast<float>(b[c].item<double>() / sum_step));
    m.scales.push_back(static_cast<float>(options.output ? sum_step / options.output->scale : sum_step));
  }
  if (options.input.zero_point != 0) m.input_zero = {static_cast<int32_t>(options.input.zero_point)};
}

Int8Convolution::~Int8Convolution() = default;
Int8Convolution::Int8Convolution(Int8Convolution&&) noexcept = default;

// A primitive per input size: oneDNN specialises its kernel to the shapes.
const Int8Convolution::Impl::Prepared& Int8Convolution::Impl::prepare(int64_t n, int64_t h, int64_t w) {
  const std::lock_guard<std::mutex> lock(mutex);
  const std::array<int64_t, 3> key{n, h, w};
  if (auto found = prepared.find(key); found != prepared.end()) return found->second;
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const int64_t p = options.padding, d = options.dilation, reach = d * (kernel - 1);
  const dnnl::memory::desc src({n, in_channels, h, w}, dt::u8, tag::nhwc);
  const dnnl::memory::desc wei({out_channels, in_channels, kernel, kernel}, dt::s8, tag::any);
  const dnnl::memory::desc bia({out_channels}, dt::f32, tag::a);
  const dnnl::memory::desc dst({n, out_channels, h + 2 * p - reach, w + 2 * p - reach},
                               options.output ? dt::u8 : dt::f32, tag::nhwc);
  const dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                             src, wei, bia, dst, {1, 1}, {d - 1, d - 1}, {p, p}, {p, p});
  dnnl::primitive_attr attr;
  // The caller's scratch memory, one per call, so that several threads may run the same convolution.
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attr.set_output_scales(1 << 1, scales);  // one per output channel (dimension 1)
  if (!input_zero.empty()) attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
  if (options.output && options.output->zero_point != 0)
    attr.set_zero_points(DNNL_ARG_DST, 0, {static_cast<int32_t>(options.output->zero_point)});
  if (options.relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  const dnnl::convolution_forward::primitive_desc pd(desc, attr, cpu_engine());
  Prepared made{dnnl::convolution_forward(pd), src, bia, dst, pd.scratchpad_desc(), dnnl::memory(pd.weights_desc(), cpu_engine())};
  dnnl::memory plain({{out_channels, in_channels, kernel, kernel}, dt::s8, tag::oihw}, cpu_engine(), weight.data_ptr());
  dnnl::stream stream(cpu_engine());
  dnnl::reorder(plain, made.weight).execute(stream, plain, made.weight);
  stream.wait();
  return prepared.emplace(key, std::move(made)).first->second;
}

torch::Tensor Int8Convolution::forward(const torch::Tensor& input) {
  Impl& m = *impl_;
  const auto q = input.contiguous(at::MemoryFormat::ChannelsLast);
  if (q.scalar_type() != torch::kQUInt8 || q.dim() != 4 || q.size(1) != m.in_channels ||
      q.q_scale() != m.options.input.scale || q.q_zero_point() != m.options.input.zero_point)
    throw Error("int8 convolution: the input is not the quantized tensor it was built for");
  const int64_t n = q.size(0), h = q.size(2), w = q.size(3), grow = 2 * m.options.padding - m.options.dilation * (m.kernel - 1);
  const auto& prepared = m.prepare(n, h, w);
  const std::vector<int64_t> size{n, m.out_channels, h + grow, w + grow};
  const auto& output = m.options.output;
  auto out = output ? at::_empty_affine_quantized(size, q.options(), output->scale, output->zero_point,
                                                  at::MemoryFormat::ChannelsLast)
                    : torch::empty(size, torch::dtype(torch::kFloat).memory_format(at::MemoryFormat::ChannelsLast));
  auto& engine = cpu_engine();
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory(prepared.src, engine, const_cast<uint8_t*>(bytes_of(q)))},
      {DNNL_ARG_WEIGHTS, prepared.weight},
      {DNNL_ARG_BIAS, dnnl::memory(prepared.bias, engine, m.bias.data())},
      {DNNL_ARG_DST, dnnl::memory(prepared.dst, engine, out.data_ptr())}};
  torch::Tensor scratch;
  if (const size_t bytes = prepared.scratchpad.get_size(); bytes > 0) {
    scratch = torch::empty({static_cast<int64_t>(bytes)}, torch::kUInt8);
    args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(prepared.scratchpad, engine, scratch.data_ptr()));
  }
  if (!m.input_zero.empty())
    args.emplace(DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC,
                 dnnl::memory({{1}, dnnl::memory::data_type::s32, dnnl::memory::format_tag::x}, engine, m.input_zero.data()));
  dnnl::stream stream(engine);
  prepared.conv.execute(stream, args);
  stream.wait();
  return out;
}

}  // namespace segnet

#include <segnet/error.h>
#include <segnet/quantize.h>
#include <segnet/runtime.h>
#include <segnet/segmenter.h>

#include "common/format_number.h"

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace segnet {

namespace {

namespace F = torch::nn::functional;

// Bilinear. Images are antialiased when shrunk, as resize_image does (cv::INTER_AREA); probabilities are
// not, as before test-time augmentation, so that plain inference gives what it gave.
torch::Tensor resized(const torch::Tensor& x, int64_t height, int64_t width, bool image) {
  if (x.size(2) == height && x.size(3) == width) return x;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{height, width})
                               .mode(torch::kBilinear)
                               .align_corners(false)
                               .antialias(image && (height < x.size(2) || width < x.size(3))));
}

int64_t scaled(int64_t length, double factor) { return std::max<int64_t>(1, std::llround(double(length) * factor)); }

// Where tiles of `tile` start along a side of `length` (>= tile): neighbours overlap by `overlap` of a
// tile, and the last one ends flush with the side.
std::vector<int64_t> tile_starts(int64_t length, int64_t tile, double overlap) {
  const int64_t stride = std::max<int64_t>(1, tile - std::llround(double(tile) * overlap));
  std::vector<int64_t> starts;
  for (int64_t start = 0; start + tile < length; start += stride) starts.push_back(start);
  starts.push_back(length - tile);
  return starts;
}

constexpr size_t kTilesPerPass = 8;

}  // namespace

torch::Tensor class_probabilities(const torch::Tensor& logits, bool binary) {
  if (!binary) return torch::softmax(logits, 1);
  const auto foreground = torch::sigmoid(logits);
  return torch::cat({1 - foreground, foreground}, 1);
}

Segmenter::Segmenter(ModelInfo info, const SegNet& model, torch::Device device, SegmenterOptions options)
    : info_(std::move(info)), device_(device), options_(options),
      dtype_(options.precision == Precision::BFloat16 ? torch::kBFloat16 : torch::kFloat) {
  if (options_.mc_samples < 1) throw OptionError("mc_samples", "must be at least 1");
  if (options_.mc_samples > 1 && !model->has_dropout())
    throw OptionError("mc_samples", "needs a model with dropout to sample; '" + to_string(info_.model) +
                                        "' has none (use a bayesian-* model)");
  if (!(options_.threshold > 0 && options_.threshold < 1)) throw OptionError("threshold", "must be between 0 and 1");
  if (options_.tta_scales.empty()) throw OptionError("tta_scales", "must list at least one scale");
  for (double scale : options_.tta_scales)
    if (!(scale > 0 && scale <= 4))  // beyond 4, memory grows with the square for views the model never saw
      throw OptionError("tta_scales", "must each be in (0, 4], not " + format_number(scale));
  if (!(options_.window_overlap >= 0 && options_.window_overlap < 1))
    throw OptionError("window_overlap", "must be in [0, 1), not " + format_number(options_.window_overlap));
  if (options_.precision == Precision::Int8) {
    if (!device_.is_cpu()) throw OptionError("precision", "int8 runs on the CPU only, not on '" + device_.str() + "'");
    if (options_.mc_samples > 1) throw OptionError("mc_samples", "int8 inference does not sample dropout");
    if (info_.activation_ranges.empty())
      throw OptionError("precision", "int8 needs activation ranges calibrated on images; this model has none");
    quantized_ = std::make_shared<QuantizedSegNet>(model, info_.activation_ranges, info_.norm);
    return;  // no float copy: it would only hold memory
  }
  model_ = copy_model(model);
  model_->eval();
  model_->set_mc_dropout(options_.mc_samples > 1);
  model_->fold_batch_norm();
  model_->to(device_, dtype_);
  to_memory_format(*model_, fastest_memory_format(device_, options_.precision));
}

Segmenter Segmenter::from_checkpoint(const std::filesystem::path& file, torch::Device device,
                                     SegmenterOptions options) {
  Checkpoint ck = load_checkpoint(file);
  if (options.precision == Precision::Int8 && ck.info.activation_ranges.empty())
    throw Error(file, "holds no int8 activation ranges; calibrate it on training images first");
  return Segmenter(std::move(ck.info), ck.model, device, options);
}

torch::Tensor Segmenter::logits(const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  if (quantized_) return quantized_->forward(input);
  const auto x = input.to(device_, dtype_).contiguous(fastest_memory_format(device_, options_.precision));
  return model_->forward(x).to(torch::kFloat);
}

torch::Tensor Segmenter::input(const cv::Mat& rgb) const {
  if (rgb.empty() || rgb.type() != CV_8UC3)
    throw Error("segment: images must be 8-bit, 3-channel RGB (16-bit ones: to_8bit with the model's input range)");
  const double top = *std::max_element(options_.tta_scales.begin(), options_.tta_scales.end());
  // Smaller scales are shrunk from this on the device, so each image is resized once here.
  Size2 size{scaled(info_.size.height, top), scaled(info_.size.width, top)};
  if (options_.sliding_window) {
    const double cover = std::max(double(info_.size.height) / rgb.rows, double(info_.size.width) / rgb.cols);
    size = {scaled(rgb.rows, cover * top), scaled(rgb.cols, cover * top)};
  }
  return network_input(rgb, size, info_.norm);
}

torch::Tensor Segmenter::view_probabilities(const torch::Tensor& views) {
  const int64_t n = views.size(0);
  const bool flip = options_.tta == Tta::Flip;
  const auto batch = flip ? torch::cat({views, views.flip({3})}) : views;
  torch::Tensor sum;
  for (int64_t s = 0; s < options_.mc_samples; ++s) {
    const auto p = class_probabilities(logits(batch), info_.binary());
    sum = s == 0 ? p : sum.add_(p);
  }
  if (flip) return sum.slice(0, 0, n).add(sum.slice(0, n).flip({3})).div_(2.0 * double(options_.mc_samples));
  return sum.div_(static_cast<double>(options_.mc_samples));
}

torch::Tensor Segmenter::window_probabilities(const torch::Tensor& views) {
  const int64_t n = views.size(0), height = views.size(2), width = views.size(3);
  const int64_t tile_h = info_.size.height, tile_w = info_.size.width;
  // 0 is the normalisation's mean colour.
  const auto padded =
      torch::constant_pad_nd(views, {0, std::max<int64_t>(0, tile_w - width), 0, std::max<int64_t>(0, tile_h - height)});
  const auto ys = tile_starts(padded.size(2), tile_h, options_.window_overlap);
  const auto xs = tile_starts(padded.size(3), tile_w, options_.window_overlap);
  std::vector<std::pair<int64_t, int64_t>> corners;
  for (int64_t y : ys)
    for (int64_t x : xs) corners.emplace_back(y, x);
  torch::Tensor sum;
  auto count = torch::zeros({1, 1, padded.size(2), padded.size(3)}, views.options());
  // At most kTilesPerPass tiles of each view per forward pass, so that the network's activations do not
  // grow with an image's length.
  for (size_t first = 0; first < corners.size(); first += kTilesPerPass) {
    const size_t last = std::min(corners.size(), first + kTilesPerPass);
    std::vector<torch::Tensor> tiles;  // tile-major: tile k of view i is row k * n + i
    for (size_t k = first; k < last; ++k) {
      const auto [y, x] = corners[k];
      tiles.push_back(padded.slice(2, y, y + tile_h).slice(3, x, x + tile_w));
    }
    const auto p = view_probabilities(torch::cat(tiles));
    if (!sum.defined()) sum = torch::zeros({n, p.size(1), padded.size(2), padded.size(3)}, p.options());
    for (size_t k = first; k < last; ++k) {
      const auto [y, x] = corners[k];
      const auto row = static_cast<int64_t>(k - first) * n;
      sum.slice(2, y, y + tile_h).slice(3, x, x + tile_w).add_(p.slice(0, row, row + n));
      count.slice(2, y, y + tile_h).slice(3, x, x + tile_w).add_(1);
    }
  }
  return sum.div_(count).slice(2, 0, height).slice(3, 0, width);
}

std::vector<torch::Tensor> Segmenter::probabilities(const torch::Tensor& inputs, const std::vector<cv::Size>& sizes) {
  TORCH_CHECK(inputs.dim() == 4 && inputs.size(0) == static_cast<int64_t>(sizes.size()),
              "probabilities: one size per input image");
  torch::NoGradGuard no_grad;
  const double top = *std::max_element(options_.tta_scales.begin(), options_.tta_scales.end());
  std::vector<torch::Tensor> sums(sizes.size());
  for (double scale : options_.tta_scales) {
    const auto views = options_.sliding_window
                           ? resized(inputs, scaled(inputs.size(2), scale / top), scaled(inputs.size(3), scale / top), true)
                           : resized(inputs, scaled(info_.size.height, scale), scaled(info_.size.width, scale), true);
    const auto p = options_.sliding_window ? window_probabilities(views) : view_probabilities(views);
    for (size_t i = 0; i < sizes.size(); ++i) {
      auto pi = resized(p.slice(0, i, i + 1), sizes[i].height, sizes[i].width, false);
      sums[i] = sums[i].defined() ? sums[i] + pi : pi;
    }
  }
  std::vector<torch::Tensor> out;
  for (const auto& sum : sums)
    out.push_back(sum.div(static_cast<double>(options_.tta_scales.size())).squeeze(0).to(torch::kCPU).contiguous());
  return out;
}

std::vector<torch::Tensor> Segmenter::probabilities(const std::vector<torch::Tensor>& inputs,
                                                    const std::vector<cv::Size>& sizes) {
  TORCH_CHECK(inputs.size() == sizes.size(), "probabilities: one size per input image");
  std::vector<torch::Tensor> out(inputs.size());
  for (size_t first = 0; first < inputs.size(); ++first) {
    if (out[first].defined()) continue;
    std::vector<size_t> same;  // the inputs of first's size, stacked into one batch
    for (size_t i = first; i < inputs.size(); ++i)
      if (!out[i].defined() && inputs[i].sizes() == inputs[first].sizes()) same.push_back(i);
    std::vector<torch::Tensor> batch;
    std::vector<cv::Size> batch_sizes;
    for (size_t i : same) batch.push_back(inputs[i]), batch_sizes.push_back(sizes[i]);
    const auto p = probabilities(torch::stack(batch), batch_sizes);
    for (size_t j = 0; j < same.size(); ++j) out[same[j]] = p[j];
  }
  return out;
}

torch::Tensor Segmenter::probabilities(const cv::Mat& rgb) {
  return probabilities(input(rgb).unsqueeze(0), {rgb.size()})[0];
}

cv::Mat Segmenter::labels_from(const torch::Tensor& probabilities) const {
  return label_image(info_.binary() ? probabilities[1].ge(options_.threshold) : probabilities.argmax(0));
}

std::vector<cv::Mat> Segmenter::segment(const std::vector<cv::Mat>& images) {
  if (images.empty()) return {};
  std::vector<torch::Tensor> inputs;
  std::vector<cv::Size> sizes;
  for (const auto& image : images) {
    inputs.push_back(input(image));
    sizes.push_back(image.size());
  }
  std::vector<cv::Mat> ids;
  for (const auto& p : probabilities(inputs, sizes)) ids.push_back(labels_from(p));
  return ids;
}

cv::Mat Segmenter::segment(const cv::Mat& rgb) { return labels_from(probabilities(rgb)); }

}  // namespace segnet

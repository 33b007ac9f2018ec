#include <segnet/adapt.h>

#include <segnet/checkpoint.h>
#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/files.h>

#include <torch/torch.h>

#include <algorithm>
#include <string>

namespace segnet {

int64_t adapt_batch_norm(SegNet& model, const std::function<torch::Tensor()>& next_batch) {
  struct Layer {
    torch::nn::BatchNorm2dImpl* bn;
    c10::optional<double> momentum;
    torch::Tensor mean, var;  // as they were, restored if anything throws
  };
  std::vector<Layer> layers;
  for (const auto& module : model->modules(/*include_self=*/false))
    if (auto* bn = module->as<torch::nn::BatchNorm2dImpl>())
      layers.push_back({bn, bn->options.momentum(), bn->running_mean.clone(), bn->running_var.clone()});
  const auto restore = [&](bool statistics) {
    for (auto& l : layers) {
      l.bn->options.momentum(l.momentum);
      if (statistics) {
        l.bn->running_mean.copy_(l.mean);
        l.bn->running_var.copy_(l.var);
      }
    }
    model->eval();
  };
  model->eval();  // dropout off; batch norm alone normalises by the batch
  for (auto& l : layers) l.bn->train();
  int64_t seen = 0;
  try {
    torch::NoGradGuard no_grad;
    for (torch::Tensor batch = next_batch(); batch.defined(); batch = next_batch()) {
      const int64_t n = batch.size(0);
      // running = (1 - m) running + m batch with m = n / (seen + n): the image-weighted average of the
      // batches so far (the first batch replaces the trained statistics).
      for (auto& l : layers) l.bn->options.momentum(static_cast<double>(n) / static_cast<double>(seen + n));
      model->forward(batch);
      seen += n;
    }
    if (seen == 0) throw OptionError("images", "none to adapt batch norm's statistics to");
  } catch (...) {
    restore(true);
    throw;
  }
  restore(false);
  return seen;
}

AdaptationReport adapt_checkpoint(const CheckpointAdaptation& o, const AdaptationProgress& progress) {
  if (o.checkpoint.empty()) throw OptionError("checkpoint", "is needed: the checkpoint to adapt");
  if (o.images.empty()) throw OptionError("images", "are needed: images of the scene to adapt to");
  if (o.batch < 1) throw OptionError("batch", "must be at least 1, got " + std::to_string(o.batch));
  AdaptationReport report;
  report.out = o.out.empty() ? o.checkpoint.parent_path() / (o.checkpoint.stem().string() + "_adapted.pt") : o.out;
  std::vector<std::filesystem::path> inputs = o.images;
  inputs.push_back(o.checkpoint);
  refuse_overwriting_input("out", report.out, inputs);
  Checkpoint ck = load_checkpoint(o.checkpoint);
  ck.model->to(o.device);
  const auto total = static_cast<int64_t>(o.images.size());
  const int64_t batch = std::min(o.batch, total);
  int64_t next = 0;
  report.images = adapt_batch_norm(ck.model, [&]() -> torch::Tensor {
    if (next > 0 && progress) progress(next, total);
    if (next == total) return {};
    std::vector<torch::Tensor> images;
    for (; next < total && static_cast<int64_t>(images.size()) < batch; ++next)
      images.push_back(image_to_tensor(resize_image(read_image(o.images[static_cast<size_t>(next)]), ck.info.size), ck.info.norm));
    return torch::stack(images).to(o.device);
  });
  for (const auto& module : ck.model->modules(/*include_self=*/false))
    if (module->as<torch::nn::BatchNorm2dImpl>()) ++report.layers;
  ck.model->to(torch::kCPU);
  ck.info.activation_ranges.clear();
  ck.state.optimizer.reset();
  save_checkpoint(report.out, ck.info, ck.model, nullptr, ck.state);
  return report;
}

}  // namespace segnet

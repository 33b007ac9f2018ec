#include <segnet/adapt.h>

#include <segnet/checkpoint.h>
#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/files.h>

#include "common/format_number.h"
#include "video_frames.h"

#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <string>

namespace segnet {

AdaptedStatistics adapt_batch_norm(SegNet& model, const std::function<torch::Tensor()>& next_batch,
                                   double trained_weight) {
  if (!(trained_weight >= 0 && trained_weight <= 1))
    throw OptionError("trained_weight", "must be in [0, 1], got " + format_number(trained_weight));
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
  for (auto& l : layers) {
    l.bn->running_mean.mul_(1 - trained_weight).add_(l.mean, trained_weight);
    l.bn->running_var.mul_(1 - trained_weight).add_(l.var, trained_weight);
  }
  return {seen, static_cast<int64_t>(layers.size())};
}

AdaptationReport adapt_checkpoint(const CheckpointAdaptation& o, const AdaptationProgress& progress) {
  if (o.checkpoint.empty()) throw OptionError("checkpoint", "is needed: the checkpoint to adapt");
  if (o.images.empty() && o.videos.empty()) throw OptionError("images", "are needed: images or videos of the scene to adapt to");
  if (o.batch < 1) throw OptionError("batch", "must be at least 1, got " + std::to_string(o.batch));
  if (o.frame_step < 1) throw OptionError("frame_step", "must be at least 1, got " + std::to_string(o.frame_step));
  for (const auto& video : o.videos)
    if (video.camera && video.max_frames < 1) throw OptionError("max_frames", "a camera needs a number of frames to adapt to");
  AdaptationReport report;
  report.out = o.out.empty() ? o.checkpoint.parent_path() / (o.checkpoint.stem().string() + "_adapted.pt") : o.out;
  std::vector<std::filesystem::path> inputs = o.images;
  inputs.push_back(o.checkpoint);
  for (const auto& video : o.videos)
    if (!video.camera) inputs.emplace_back(video.path);
  refuse_overwriting_input("out", report.out, inputs);
  Checkpoint ck = load_checkpoint(o.checkpoint);
  ck.model->to(o.device);

  // The scene's images, then every frame_step-th frame of each video (all opened first, so that a bad
  // one fails before any work); an empty image at the end.
  std::vector<std::unique_ptr<VideoFrames>> videos;
  report.announced = static_cast<int64_t>(o.images.size());
  for (const auto& v : o.videos) {
    videos.push_back(std::make_unique<VideoFrames>(v, ck.info.input_range));
    report.announced += (videos.back()->expected_frames() + o.frame_step - 1) / o.frame_step;
  }
  size_t image = 0, video = 0;
  const auto next_image = [&]() -> cv::Mat {
    if (image < o.images.size()) return read_image(o.images[image++], ck.info.input_range);
    for (cv::Mat rgb, skipped; video < videos.size(); ++video)
      if (videos[video]->next(rgb)) {
        for (int64_t i = 1; i < o.frame_step && videos[video]->next(skipped); ++i) {}
        return rgb;
      }
    return {};
  };
  int64_t done = 0;
  report.statistics = adapt_batch_norm(ck.model, [&]() -> torch::Tensor {
    if (progress) progress(done, std::max(report.announced, done));  // done 0 first: the inputs are open
    std::vector<torch::Tensor> batch;
    for (cv::Mat rgb; static_cast<int64_t>(batch.size()) < o.batch && !(rgb = next_image()).empty();)
      batch.push_back(network_input(rgb, ck.info.size, ck.info.norm));
    done += static_cast<int64_t>(batch.size());
    return batch.empty() ? torch::Tensor() : torch::stack(batch).to(o.device);
  }, o.trained_weight);
  ck.model->to(torch::kCPU);
  ck.info.activation_ranges.clear();
  ck.state.optimizer.reset();
  save_checkpoint(report.out, ck.info, ck.model, nullptr, ck.state);
  return report;
}

}  // namespace segnet

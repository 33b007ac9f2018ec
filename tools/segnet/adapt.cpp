// segnet adapt: a copy of a checkpoint with batch norm's statistics taken from images or videos of a new scene.
#include "cli.h"
#include "progress.h"

#include <segnet/adapt.h>
#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/predict.h>

#include <cstdio>
#include <memory>
#include <optional>

namespace segnet::cli {

namespace {

struct AdaptArgs {
  CheckpointAdaptation options;
  std::vector<std::filesystem::path> inputs;
  std::optional<int> camera;
  int64_t frames = 0;
  Compute compute;
  const CLI::App* cmd = nullptr;
};

void run_adapt(AdaptArgs& a) {
  if (a.inputs.empty() && !a.camera) throw Error("adapt: give image or video files, folders, or --camera K with --frames N");
  a.options.device = a.compute.setup();
  std::vector<std::filesystem::path> images;
  for (const auto& input : a.inputs)
    if (is_video(input)) a.options.videos.push_back({input.string(), std::nullopt, a.frames});
    else images.push_back(input);
  if (a.camera) a.options.videos.push_back({"", a.camera, a.frames});
  if (a.options.videos.empty())  // named rather than ignored
    for (const char* flag : {"--frames", "--frame-step"})
      if (given(a.cmd, flag)) throw Error(std::string(flag) + ": applies to videos and cameras only");
  a.options.images = list_images(images);
  std::optional<Progress> progress;  // the total is known once the videos are open (done 0)
  const AdaptationReport r = adapt_checkpoint(a.options, [&](int64_t done, int64_t total) {
    if (!progress) progress.emplace("adapted to", total, true);
    progress->update(done, "");
  });
  if (progress) progress->finish();
  std::printf("re-estimated %lld batch-norm layers' statistics on %lld image%s; wrote %s\n",
              static_cast<long long>(r.statistics.layers), static_cast<long long>(r.statistics.images),
              r.statistics.images == 1 ? "" : "s", r.out.c_str());
  std::fflush(stdout);  // the summary before its warning, also when both go to one log
  if (r.statistics.images < r.announced)
    std::fprintf(stderr, "segnet: warning: %lld images where the inputs announce %lld: a video ended early (damaged or cut short?)\n",
                 static_cast<long long>(r.statistics.images), static_cast<long long>(r.announced));
}

}  // namespace

Command add_adapt(CLI::App& app) {
  auto a = std::make_shared<AdaptArgs>();
  CheckpointAdaptation& c = a->options;
  auto* cmd = app.add_subcommand(
      "adapt", "adapt a checkpoint to a new scene without labels: batch norm's statistics from its images or videos");
  add_checkpoint(cmd, "--checkpoint", c.checkpoint);
  cmd->add_option("--batch", c.batch, "images per forward pass; the statistics average batches of this many")
      ->capture_default_str();
  cmd->add_option("--trained-weight", c.trained_weight,
                  "share of the trained statistics kept, in [0, 1]: 0 takes the scene's alone, 0.5 averages the two")
      ->capture_default_str();
  cmd->add_option("--out", c.out, "the adapted copy (default: beside the checkpoint, STEM_adapted.pt)");
  cmd->add_option("--camera", a->camera, "also camera K's next --frames frames");
  cmd->add_option("--frames", a->frames, "videos: stop after this many frames of each (0 = all); a camera needs it")
      ->check(kUnsigned)
      ->capture_default_str();
  cmd->add_option("--frame-step", c.frame_step, "videos: every K-th frame (neighbouring frames are nearly the same image)")
      ->capture_default_str();
  cmd->add_option("inputs", a->inputs, "image files, folders of images, video files or image sequences (frames/%04d.png)");
  a->compute.add_to(cmd, Compute::Precisions::Float32Only);
  a->cmd = cmd;
  return {cmd, [a] { run_adapt(*a); }};
}

}  // namespace segnet::cli

// segnet predict: images (files or folders), video files and cameras in; PNGs and overlay videos out.
#include "cli.h"
#include "progress.h"

#include <segnet/error.h>
#include <segnet/predict.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>

namespace segnet::cli {

namespace {

struct PredictArgs {
  std::string checkpoint;
  std::filesystem::path out;
  std::vector<std::filesystem::path> inputs;
  std::optional<int> camera;
  int64_t batch = 1;
  int64_t frames = 0;
  bool masks = false;
  bool probabilities = false;
  Compute compute;
  SegmenterOptions inference;
  const CLI::App* cmd = nullptr;
};

std::atomic<bool> interrupted{false};

// Segments one video or camera into OUT/NAME_overlay.avi (and OUT/NAME_masks/ with --masks).
void run_video(Segmenter& segmenter, const PredictArgs& a, const VideoInput& input, const std::string& name) {
  const VideoOutputs outputs{a.out / (name + "_overlay.avi"), a.masks ? a.out / (name + "_masks") : std::filesystem::path()};
  Progress progress("frame", 0, true);
  const InferenceReport r = predict_video(segmenter, input, outputs, a.batch, [&](int64_t done, int64_t total) {
    if (done == 1) progress = Progress("segmenting " + name + ": frame", total, true);
    progress.update(done, "");
    return !interrupted;
  });
  progress.finish();
  std::printf("%s: %lld frame%s in %.1f s, %.2f frames/s; overlay video %s%s%s\n", name.c_str(),
              static_cast<long long>(r.items), r.items == 1 ? "" : "s", r.seconds, r.per_second(), outputs.video.c_str(),
              a.masks ? ", masks in " : "", a.masks ? outputs.masks_folder.c_str() : "");
  std::fflush(stdout);  // the summary before its warning, also when both go to one log
  if (r.items < r.announced && !interrupted)
    std::fprintf(stderr, "segnet: warning: %s ended after %lld of the %lld frames it announces (damaged or cut short?)\n",
                 input.path.c_str(), static_cast<long long>(r.items), static_cast<long long>(r.announced));
}

void run_predict(PredictArgs& a) {
  a.inference.precision = a.compute.precision;
  if (a.inputs.empty() && !a.camera) throw Error("predict: give image or video files, folders, or --camera K");
  std::vector<std::filesystem::path> images, videos;
  for (const auto& input : a.inputs) (is_video(input) ? videos : images).push_back(input);
  // Flags that would do nothing are named rather than ignored.
  if (videos.empty() && !a.camera) {
    if (given(a.cmd, "--frames")) throw Error("--frames: applies to videos and cameras only");
    if (given(a.cmd, "--masks")) throw Error("--masks: applies to videos and cameras only (images always get their ids as STEM.png)");
  }
  if (images.empty() && given(a.cmd, "--probabilities")) throw Error("--probabilities: applies to images only");
  const auto files = list_images(images);  // a missing image fails before any video is segmented
  Segmenter segmenter = Segmenter::from_checkpoint(a.checkpoint, a.compute.setup(), a.inference);
  std::signal(SIGINT, [](int) { interrupted = true; });  // a camera runs until Ctrl-C; the video is closed properly
  for (const auto& video : videos) {
    // Outputs are named after the video, or after the folder of an image sequence.
    const std::string name = (video.string().find('%') != std::string::npos ? video.parent_path().filename() : video.stem()).string();
    run_video(segmenter, a, {video.string(), std::nullopt, a.frames}, name);
  }
  if (a.camera) run_video(segmenter, a, {"", a.camera, a.frames}, "camera" + std::to_string(*a.camera));
  if (files.empty()) return;
  Progress progress("segmented", static_cast<int64_t>(files.size()), true);
  ImageOutputs outputs{a.out};
  outputs.probabilities = a.probabilities;
  const InferenceReport r = predict_images(segmenter, files, outputs, a.batch, [&](int64_t done, int64_t) {
    progress.update(done, "");
    return !interrupted;
  });
  progress.finish();
  std::printf("segmented %lld image%s in %.1f s (%.2f images/s, batch %lld); results in %s\n",
              static_cast<long long>(r.items), r.items == 1 ? "" : "s", r.seconds, r.per_second(), static_cast<long long>(a.batch), a.out.c_str());
}

}  // namespace

Command add_predict(CLI::App& app) {
  auto a = std::make_shared<PredictArgs>();
  auto* cmd = app.add_subcommand(
      "predict", "segment images (ids, colours, overlays as PNG) and videos or a camera (overlay video)");
  add_checkpoint(cmd, "--checkpoint", a->checkpoint);
  cmd->add_option("--out", a->out, "output folder")->required();
  cmd->add_option("inputs", a->inputs, "image files, folders of images, video files");
  cmd->add_option("--camera", a->camera, "also segment camera K (until Ctrl-C or --frames)");
  cmd->add_option("--batch", a->batch, "images or frames per forward pass")->capture_default_str();
  cmd->add_option("--frames", a->frames, "videos and cameras: stop after this many frames (0 = all)")
      ->check(kUnsigned)
      ->capture_default_str();
  cmd->add_flag("--masks", a->masks, "videos and cameras: also write each frame's class ids as PNG");
  cmd->add_flag("--probabilities", a->probabilities,
                "images: also write each image's class probabilities as STEM_probabilities.npy (float32)");
  a->compute.add_to(cmd);
  add_inference_options(cmd, a->inference);
  a->cmd = cmd;
  return {cmd, [a] { run_predict(*a); }};
}

}  // namespace segnet::cli

// segnet adapt: a copy of a checkpoint with batch norm's statistics taken from images of a new scene.
#include "cli.h"
#include "progress.h"

#include <segnet/adapt.h>
#include <segnet/data.h>

#include <cstdio>
#include <memory>

namespace segnet::cli {

namespace {

struct AdaptArgs {
  CheckpointAdaptation options;
  std::vector<std::filesystem::path> inputs;
  Compute compute;
};

void run_adapt(AdaptArgs& a) {
  a.options.device = a.compute.setup();
  a.options.images = list_images(a.inputs);
  Progress progress("adapted to", static_cast<int64_t>(a.options.images.size()), true);
  const AdaptationReport r = adapt_checkpoint(a.options, [&](int64_t done, int64_t) { progress.update(done, ""); });
  progress.finish();
  std::printf("re-estimated %lld batch-norm layers' statistics on %lld image%s; wrote %s\n",
              static_cast<long long>(r.layers), static_cast<long long>(r.images), r.images == 1 ? "" : "s",
              r.out.c_str());
}

}  // namespace

Command add_adapt(CLI::App& app) {
  auto a = std::make_shared<AdaptArgs>();
  CheckpointAdaptation& c = a->options;
  auto* cmd = app.add_subcommand(
      "adapt", "adapt a checkpoint to a new scene without labels: batch norm's statistics from its images (AdaBN)");
  cmd->add_option("--checkpoint", c.checkpoint)->required();
  cmd->add_option("--batch", c.batch, "images per forward pass; the statistics average batches of this many")
      ->capture_default_str();
  cmd->add_option("--out", c.out, "the adapted copy (default: beside the checkpoint, STEM_adapted.pt)");
  cmd->add_option("inputs", a->inputs, "image files or folders of the scene")->required();
  a->compute.add_to(cmd, /*precision_option=*/false);
  return {cmd, [a] { run_adapt(*a); }};
}

}  // namespace segnet::cli

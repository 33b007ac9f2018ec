// segnet pseudo-label: masks of a model's confident predictions (void elsewhere) for self-training.
#include "cli.h"
#include "progress.h"

#include <segnet/predict.h>

#include <cstdio>
#include <memory>

namespace segnet::cli {

namespace {

struct PseudoLabelArgs {
  std::string checkpoint;
  std::filesystem::path out;
  std::vector<std::filesystem::path> inputs;
  double threshold = 0.9;
  double class_share = 0;
  Compute compute;
};

void run_pseudo_label(PseudoLabelArgs& a) {
  Segmenter segmenter = Segmenter::from_checkpoint(a.checkpoint, a.compute.setup(), {a.compute.precision});
  const auto files = list_images(a.inputs);
  Progress progress("pseudo-labelled", static_cast<int64_t>(files.size()), true);
  const PseudoLabelReport r = write_pseudo_labels(segmenter, files, a.out, a.threshold, a.class_share, [&](int64_t done, int64_t) {
    progress.update(done, "");
    return true;
  });
  progress.finish();
  std::printf("%.1f%% of pixels confident at threshold %.2f; %lld masks in %s (void = %lld)\n",
              100.0 * r.confident_fraction, a.threshold, static_cast<long long>(r.images), a.out.c_str(),
              static_cast<long long>(r.void_label));
}

}  // namespace

Command add_pseudo_label(CLI::App& app) {
  auto a = std::make_shared<PseudoLabelArgs>();
  auto* cmd = app.add_subcommand("pseudo-label", "write label masks of confident predictions, void elsewhere");
  add_checkpoint(cmd, "--checkpoint", a->checkpoint);
  cmd->add_option("--out", a->out, "output folder")->required();
  cmd->add_option("--threshold", a->threshold, "top class probability a pixel needs")->capture_default_str();
  cmd->add_option("--class-share", a->class_share,
                  "per class, the most confident share of an image's pixels of that class that are kept below "
                  "--threshold (class-balanced); 0: the threshold alone")
      ->capture_default_str();
  cmd->add_option("inputs", a->inputs, "image files or folders")->required();
  a->compute.add_to(cmd);
  return {cmd, [a] { run_pseudo_label(*a); }};
}

}  // namespace segnet::cli

#pragma once
// The training flags `train` and `tune` share, and the TrainOptions they make.
#include "cli.h"

#include <segnet/train.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace segnet::cli {

struct TrainArgs {
  TrainOptions options;
  Compute compute;
  std::string size = "360x480";
  std::string class_weights = "median";
  AugmentPreset augment = AugmentPreset::Color;
  std::vector<double> scale_range, color_jitter, pseudo_scale_range, input_range;
  bool no_flip = false;
  std::filesystem::path config;
  bool resume_if_exists = false;
  // Distributed: flags win over torchrun's environment variables.
  std::optional<int64_t> world_size, rank;
  std::string master;
  double timeout_seconds = DistributedOptions{}.timeout_seconds;
  double bucket_megabytes = DistributedOptions{}.bucket_megabytes;
  bool no_overlap = false;
};

// Every flag that says what a run is (data, model, recipe, labels, pseudo-labels, seed, compute); not
// --out, --resume or the distributed ones.
void add_training_flags(CLI::App* cmd, TrainArgs& args);
// args.options completed from the flags' texts (size, augmentation, class weights) and from --config.
void resolve_training_options(TrainArgs& args, const CLI::App* cmd);
// A progress line per step and a summary per epoch, on stderr.
TrainCallbacks progress_callbacks();

}  // namespace segnet::cli

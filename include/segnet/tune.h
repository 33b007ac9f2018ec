#pragma once
// Hyper-parameter search: many short training runs, the best continued (successive halving, Jamieson
// and Talwalkar 2016), scored on the validation list.
#include <segnet/train.h>

#include <nlohmann/json.hpp>

#include <array>
#include <filesystem>
#include <functional>
#include <vector>

namespace segnet {

// What trials draw their settings from: the learning rate and weight decay log-uniformly in [min, max],
// the rest uniformly from the lists.
struct SearchSpace {
  std::array<double, 2> lr{0.003, 0.05};  // for SGD; give a range around 0.001 for Adam
  std::array<double, 2> weight_decay{1e-5, 1e-3};
  std::vector<int64_t> batch{2, 4, 8};
  std::vector<AugmentPreset> augment{AugmentPreset::Flip, AugmentPreset::Color, AugmentPreset::Light, AugmentPreset::Standard,
                                     AugmentPreset::Strong};
  std::vector<ClassWeights::Kind> class_weights{ClassWeights::Kind::MedianFrequency, ClassWeights::Kind::Uniform};
};
// A JSON object with any of the keys lr and weight_decay ([min, max]), batch, augment ("standard", ...)
// and class_weights ("median", "none") as lists; keys present replace `base`'s. Errors name the key.
SearchSpace search_space_from_json(const nlohmann::json& space, SearchSpace base = {});
nlohmann::json search_space_to_json(const SearchSpace& space);

struct TuneOptions {
  TrainOptions base;          // what every trial shares (data, model, size, precision, seed, ...); needs a val list
  std::filesystem::path out;  // tune.json, tune.csv, best.json and a run folder per trial (trial_000, ...)
  SearchSpace space;
  // Trials of the first rung; 0: as many as `budget_minutes` holds, from the first trial's time.
  int64_t trials = 0;
  // Wall-clock budget; 0: none (then `trials` is needed). No rung starts a trial past it.
  double budget_minutes = 0;
  int64_t min_epochs = 3;  // epochs of a first-rung trial
  int64_t eta = 3;         // each rung continues the best 1/eta of the last one to eta times its epochs
  int64_t rungs = 3;       // so the best trials reach min_epochs x eta^(rungs - 1) epochs
};
void validate(const TuneOptions& options);

struct TrialRecord {
  int64_t trial = 0;
  TrainOptions options;        // base with this trial's settings; `out` is its run folder
  AugmentPreset augment = AugmentPreset::Color;  // the preset options.augment holds
  int64_t rung = 0;            // the last rung it reached
  std::vector<double> miou;    // val mIoU after each epoch
  double score() const { return miou.empty() ? -1 : miou.back(); }  // ranks trials: the last epoch's mIoU
};

struct TuneReport {
  std::vector<TrialRecord> trials;
  size_t best = 0;  // index into trials: the best at the highest rung reached
};

struct TuneCallbacks {
  // Before each trial's training on a rung: (trial, rung, epochs it will reach).
  std::function<void(const TrialRecord&, int64_t epochs)> trial_starts;
  TrainCallbacks train;  // of each trial's run
};

// Runs the search in options.out, resumable: run again with the same options after an interruption and
// finished trials are read back, not retrained, and the interrupted one resumes from its last epoch
// (different options are an OptionError naming the first that differs). After every trial it rewrites
// tune.csv (a row per trial: settings, rung, epochs, last and best val mIoU, mIoU by epoch) and
// best.json (the best trial's options, with the last rung's epochs, as `train`'s config reads them).
TuneReport tune(const TuneOptions& options, const TuneCallbacks& callbacks = {});

}  // namespace segnet

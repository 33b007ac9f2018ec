#pragma once
// The files of a training run: metrics.csv (a row per epoch), last.pt (everything to resume) and
// best.pt (the model of the best validation epoch).
#include <segnet/checkpoint.h>
#include <segnet/train.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>

namespace segnet {

class RunDirectory {
 public:
  explicit RunDirectory(std::filesystem::path folder);

  // An Error if the folder already holds a run.
  void refuse_existing_run() const;
  // A new run: refuses an existing one, then creates the folder and writes config.json.
  void create(const nlohmann::json& config) const;
  // The run to continue: last.pt, checked against `options` (every option of config.json where the run
  // has one, and the number of processes; model, task, decoder, dilation, optimizer, pseudo-labels in
  // any case, and whether it averages the weights). Changes nothing.
  CheckpointReader resume(const TrainOptions& options) const;
  // Before a resumed run goes on from `epoch`: metrics.csv loses rows of later epochs, and config.json
  // records the new epoch count and patience.
  void rewind(int64_t epoch, int64_t epochs, int64_t patience) const;

  // Appends the epoch's row, saves last.pt and, when `record.best`, best.pt, and redraws curves.png.
  // `teacher` and `trained` (the weights `model` averages) go into last.pt alone; either may be null.
  void record(const EpochRecord& record, const ModelInfo& info, const TrainState& state, SegNet& model,
              const torch::optim::Optimizer& optimizer, SegNet* teacher, SegNet* trained) const;

  std::filesystem::path last() const { return folder_ / "last.pt"; }
  std::filesystem::path best() const { return folder_ / "best.pt"; }
  std::filesystem::path metrics() const { return folder_ / "metrics.csv"; }
  std::filesystem::path config() const { return folder_ / "config.json"; }

 private:
  std::filesystem::path folder_;
};

}  // namespace segnet

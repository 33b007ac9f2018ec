#pragma once
// config.json of a training run: every option, the command line, the segnet that ran it and the
// dataset's statistics, so that a run can be read, repeated and resumed.
#include <segnet/checkpoint.h>
#include <segnet/train.h>

#include <nlohmann/json.hpp>

namespace segnet {

nlohmann::json run_config(const TrainOptions& options, const ModelInfo& info, const DatasetStatistics& stats,
                          size_t train_images, size_t val_images);
// An OptionError naming the first option of `options` that differs from the run's (`run`, read from
// `config`). Only `epochs` and `patience` may change: a resumed run may train further.
void check_same_options(const std::filesystem::path& config, const nlohmann::json& run, const TrainOptions& options);
// An OptionError unless the run of `config` was trained by `world_size` processes (1 where it does not say).
void check_same_processes(const std::filesystem::path& config, int64_t world_size);
// Records a resumed run's epoch count and patience in its config.json.
void record_run_length(const std::filesystem::path& config, int64_t epochs, int64_t patience);

}  // namespace segnet

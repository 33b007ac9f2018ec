#pragma once
// Self-describing checkpoints: everything eval and predict need, plus the state to resume training.
#include <segnet/data.h>
#include <segnet/model.h>

#include <torch/optim/optimizer.h>

#include <filesystem>
#include <string>
#include <vector>

namespace segnet {

// What a trained model is and how its inputs are prepared.
struct ModelInfo {
  std::string model;  // architecture name
  std::string task = "multiclass";  // or "binary": one sigmoid output, classes background/foreground
  std::string decoder = "indices";
  std::vector<int64_t> dilation;     // per encoder stage; empty = 1
  std::vector<ClassInfo> classes;
  std::vector<int64_t> void_labels;  // label values ignored when this model was trained
  Size2 size;                        // training input size
  Normalization norm;
  std::vector<float> class_weights;

  bool binary() const { return task == "binary"; }
  SegNetOptions options() const {
    return SegNetOptions(model, binary() ? 1 : static_cast<int64_t>(classes.size())).decoder(decoder).dilation(dilation);
  }
  LabelSpec label_spec() const { return {static_cast<int64_t>(classes.size()), void_labels, binary()}; }
};

struct TrainState {
  int64_t epoch = 0;  // epochs completed
  double best_miou = -1.0;
  int64_t best_epoch = 0;
  std::string optimizer;  // empty when no optimizer state is stored
};

// Written to a temporary file beside `file`, then renamed over it: an existing file is never left
// half-written. `optimizer` and `teacher` (the pseudo-label teacher) may be null.
void save_checkpoint(const std::filesystem::path& file, const ModelInfo& info, SegNet& model,
                     const torch::optim::Optimizer* optimizer, const TrainState& state, SegNet* teacher = nullptr);

struct Checkpoint {
  ModelInfo info;
  TrainState state;
  SegNet model{nullptr};  // on the CPU, in eval mode
};
// Truncated, corrupt or foreign files and weights that do not fit the described model are Errors.
Checkpoint load_checkpoint(const std::filesystem::path& file);
void load_optimizer_state(const std::filesystem::path& file, torch::optim::Optimizer& optimizer);
// The teacher's weights into `teacher` (built like the model); false if the file holds none.
bool load_teacher(const std::filesystem::path& file, SegNet& teacher);

}  // namespace segnet

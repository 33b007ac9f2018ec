#pragma once
// Self-describing checkpoints: everything eval and predict need, plus the state to resume training.
// Each file ends with a CRC-32 of its contents, verified on every load: a damaged file is an error.
#include <segnet/choices.h>
#include <segnet/data.h>
#include <segnet/model.h>

#include <nlohmann/json.hpp>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace segnet {

// The values one activation took on calibration images: what int8 inference maps to 0..255.
struct ActivationRange {
  float min = 0, max = 0;
};

// What a trained model is and how its inputs are prepared.
struct ModelInfo {
  Model model = Model::SegNet;
  Task task = Task::Multiclass;  // binary: one sigmoid output, classes background/foreground
  Upsampling upsampling = Upsampling::Indices;
  std::vector<int64_t> dilation;     // per encoder stage; empty = 1
  std::vector<ClassInfo> classes;
  std::vector<int64_t> void_labels;  // label values ignored when this model was trained
  Size2 size;                        // training input size
  Normalization norm;
  std::vector<float> class_weights;
  // How the training labels were stored; eval and pseudo-labels read labels the same way.
  LabelFormat label_format = LabelFormat::Ids;
  std::map<int64_t, int64_t> label_map;  // stored value -> class id or kIgnoreLabel; empty: as stored
  std::vector<Rgb> void_colors;          // colour masks: colours that are void
  // int8 inference: each quantized activation's range, in the order quantize.h gives; empty: not calibrated.
  std::vector<ActivationRange> activation_ranges;
  // 16-bit images are read through it (read_image); unset: 8-bit images.
  std::optional<InputRange> input_range;

  bool binary() const { return task == Task::Binary; }
  SegNetOptions options() const {
    return SegNetOptions(model, binary() ? 1 : static_cast<int64_t>(classes.size())).upsampling(upsampling).dilation(dilation);
  }
  LabelSpec label_spec() const {
    LabelSpec spec{static_cast<int64_t>(classes.size()), void_labels, binary(), label_format, label_map, {}, void_colors};
    for (const auto& c : classes) spec.class_colors.push_back(c.rgb);
    return spec;
  }
};

struct TrainState {
  int64_t epoch = 0;  // epochs completed
  double best_miou = -1.0;
  int64_t best_epoch = 0;
  std::optional<Optimizer> optimizer;  // set when the file holds optimizer state
};

// What a checkpoint stores beside its weights, as the JSON object it is stored as: the model, its
// classes, input size and normalisation, how its labels were read, int8 ranges, and the training state.
nlohmann::json to_json(const ModelInfo& info, const TrainState& state);

// Written to a temporary file beside `file`, then renamed over it: an existing file is never left
// half-written. `optimizer`, `teacher` (the pseudo-label teacher) and `trained` may be null; `trained`
// is given when `model` is an average of the weights training optimizes (TrainOptions::model_ema_decay).
void save_checkpoint(const std::filesystem::path& file, const ModelInfo& info, SegNet& model,
                     const torch::optim::Optimizer* optimizer, const TrainState& state, SegNet* teacher = nullptr,
                     SegNet* trained = nullptr);

// One checkpoint file, read and verified once. Missing, truncated, damaged or foreign files, and
// weights that do not fit the described model, are Errors naming the file.
class CheckpointReader {
 public:
  explicit CheckpointReader(std::filesystem::path file);
  const std::filesystem::path& file() const { return file_; }
  const ModelInfo& info() const { return info_; }
  const TrainState& state() const { return state_; }
  bool has_teacher() const { return has_teacher_; }
  bool has_trained() const { return has_trained_; }  // model() is a weight average; these are what it averages

  SegNet model();  // built as `info` describes, on the CPU, in eval mode
  void load_teacher(SegNet& teacher);
  void load_trained(SegNet& trained);
  void load_optimizer(torch::optim::Optimizer& optimizer);

 private:
  std::filesystem::path file_;
  torch::serialize::InputArchive archive_;
  ModelInfo info_;
  TrainState state_;
  bool has_teacher_ = false;
  bool has_trained_ = false;
};

struct Checkpoint {
  ModelInfo info;
  TrainState state;
  SegNet model{nullptr};  // on the CPU, in eval mode
};
Checkpoint load_checkpoint(const std::filesystem::path& file);

}  // namespace segnet

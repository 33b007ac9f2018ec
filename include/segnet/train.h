#pragma once
// Training SegNet on a labelled dataset (and optionally unlabelled images, with pseudo-labels),
// with per-epoch validation and resumable checkpoints.
#include <segnet/choices.h>
#include <segnet/data.h>

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace segnet {

// How much each class counts in the loss.
struct ClassWeights {
  enum class Kind { MedianFrequency, Uniform, Given };
  Kind kind = Kind::MedianFrequency;
  std::vector<float> given;  // one per class, for Kind::Given

  // Median frequency balancing, as in the SegNet paper.
  static ClassWeights median_frequency() { return {Kind::MedianFrequency, {}}; }
  static ClassWeights uniform() { return {Kind::Uniform, {}}; }
  static ClassWeights of(std::vector<float> weights) { return {Kind::Given, std::move(weights)}; }
};
// The kinds that have names ("median", "none"); given weights are written as their list.
template <>
struct ChoiceNames<ClassWeights::Kind> {
  static std::vector<std::pair<ClassWeights::Kind, std::string>> all() {
    return {{ClassWeights::Kind::MedianFrequency, "median"}, {ClassWeights::Kind::Uniform, "none"}};
  }
};

// Pseudo-label semi-supervised learning: loss = labelled + lambda * pseudo, where pseudo-labels are an
// EMA teacher's confident predictions on a weak view of unlabelled images, learnt from a strong view.
struct PseudoLabelOptions {
  std::filesystem::path unlabeled;  // folder, or list of images relative to the dataset; empty = off
  double weight = 1.0;              // lambda, reached after `rampup_epochs`; >= 0
  double threshold = 0.9;           // tau in (0, 1]: pixels whose top probability is below it are ignored
  double class_share = 0;           // in [0, 1]: per class, the teacher's most confident share of the pixels
                                    // it assigns that class is kept below tau too (confident_labels)
  // The student's view of each unlabelled image and its pseudo-labels is rescaled by a factor in
  // [min_scale, max_scale] and cropped or padded back, as AugmentOptions does for labelled images; the
  // teacher labels the image at the training scale. 1, 1: no rescaling.
  double min_scale = 1;
  double max_scale = 1;
  PseudoMix mix = PseudoMix::CutMix;  // what the strong view mixes in (choices.h)
  // The strong views' batch statistics also move batch norm's running averages, so that inference
  // normalises with statistics of the unlabelled images' scenes too (AdaBN-like adaptation to footage
  // of where the model will run); false: only labelled images' statistics.
  bool adapt_statistics = false;
  int64_t rampup_epochs = 3;        // epochs over which lambda rises (Gaussian ramp); 0 = none
  double ema_decay = 0.99;          // in [0, 1): teacher = decay * teacher + (1 - decay) * student, per step
};

// The most processes a run may have. Waiting for the others grows with their count beyond the
// timeout: with a 2-second timeout, a lone rank 0 of 1000 gave up after 18 s, of 100000 not in 2 minutes.
constexpr int64_t kMaxProcesses = 1024;

// Data-parallel training over several processes, on one machine or many, through PyTorch's distributed
// engine (c10d) over Gloo (CUDA tensors too, through host memory; NCCL is not wired in). Every process runs
// train() with the same options; together they compute what one process computes with
// `accumulate` = world_size x its own (same weights, same batch-norm statistics). Joining the group
// sets SIGPIPE to ignored when the program left it at its default, so that a process that died makes
// the others throw rather than be killed by the signal.
struct DistributedOptions {
  int64_t world_size = 1;  // processes, 1..kMaxProcesses; 1 = this process alone (nothing below is used)
  int64_t rank = 0;        // this process, 0 .. world_size - 1; rank 0 alone writes the run folder
  std::string master_addr = "127.0.0.1";  // where the rendezvous store is served
  int64_t master_port = 29500;
  // torchrun's agent already serves the store on master_port (TORCHELASTIC_USE_AGENT_STORE): every
  // process is a client, and keys live under /worker/attempt_<restart_count>. Otherwise rank 0 serves it.
  bool agent_store = false;
  int64_t restart_count = 0;
  // Bound on every wait for the other processes (connecting, each collective): a process that died or
  // hangs makes the others fail with an Error after at most this long, never hang.
  double timeout_seconds = 300;
  // Gradients are all-reduced in buckets of about this size as soon as the backward pass has
  // produced them, overlapping communication with the rest of the backward pass; false: all buckets
  // after the backward pass (slower; kept to measure what overlapping gains).
  double bucket_megabytes = 4;
  bool overlap = true;
};

// The rendezvous torchrun (and Slurm or Kubernetes launchers that mimic it) describes in the
// environment: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE and
// TORCHELASTIC_RESTART_COUNT. world_size 1 when WORLD_SIZE is unset; an Error naming the variable
// when one is malformed.
DistributedOptions distributed_from_environment();

struct TrainOptions {
  std::filesystem::path data;         // dataset folder: list files, or images/ and masks/
  std::string train_list = "train.txt";
  // Validation list; nullopt: val.txt when the dataset has one, else no validation. A list that is
  // named and does not exist is an error.
  std::optional<std::string> val_list;
  Model model = Model::SegNet;
  Upsampling upsampling = Upsampling::Indices;
  std::vector<int64_t> dilation;      // per encoder stage; empty = 1
  // Where a new run's weights start (a resumed run continues from its own last.pt); empty = random.
  // torchvision's ImageNet vgg16_bn state dict (.pth, as downloaded) for the encoder of segnet and
  // bayesian-segnet; the run then normalises its inputs with ImageNet's mean and std, as the weights expect.
  std::filesystem::path encoder_weights;
  // A segnet checkpoint of the same model and decoder, for fine-tuning: all its weights (the classifier
  // only when the class count is the same) and its input normalisation. The optimizer and the epochs
  // start afresh, unlike `resume`.
  std::filesystem::path init;
  Task task = Task::Multiclass;       // binary: 0 / 1-or-255 masks, one sigmoid output
  std::optional<Loss> loss;           // default: cross-entropy (multi-class), binary cross-entropy (binary)
  Size2 size{360, 480};               // images are resized to it (labels by nearest neighbour)
  // 16-bit images are read through it (read_image), and the checkpoints keep it; 8-bit images need it unset.
  std::optional<InputRange> input_range;
  AugmentOptions augment;             // of the training images; default AugmentPreset::Color
  int64_t epochs = 100;
  // Early stopping: training ends once validation mIoU has not beaten its best for this many epochs
  // (TrainCallbacks::stopped_early says so); 0: never. Needs a validation list. A resumed run may
  // change it, as it may change `epochs`.
  int64_t patience = 0;
  // Images per micro-batch of each process: an optimizer step averages the gradients of `accumulate`
  // micro-batches on each of the distributed.world_size processes (batch x accumulate x world_size images).
  int64_t batch = 4;
  // Micro-batches per optimizer step on this process; batch-norm running statistics are updated as
  // `accumulate` processes' would be after averaging. For a large effective batch in little memory.
  int64_t accumulate = 1;
  Optimizer optimizer = Optimizer::Sgd;
  std::optional<double> lr;           // default 0.01 for SGD, 0.001 for Adam
  // Poly decays the rate per step to 0 at the last epoch, so that the last epochs settle instead of
  // oscillating (validation mIoU at a constant rate swings by several points between epochs).
  LrSchedule lr_schedule = LrSchedule::Poly;
  double weight_decay = 5e-4;
  // In [0, 1); 0 = off. Otherwise what is validated and saved as the model (last.pt, best.pt) is an
  // exponential moving average of the trained weights, average = d * average + (1 - d) * trained after
  // every optimizer step, with d = min(model_ema_decay, (1 + step) / (10 + step)) so that the random
  // start is soon forgotten; batch-norm running statistics are averaged alike (copying the trained
  // model's scored lower on CamVid val, each of 3 seeds). Validation mIoU swings by points between
  // epochs; the average's swings are half as large. last.pt also keeps the trained weights, to resume.
  double model_ema_decay = 0;
  ClassWeights class_weights = ClassWeights::median_frequency();
  std::optional<int64_t> num_classes;  // required without classes.csv (multi-class)
  std::optional<int64_t> void_label;   // default: num_classes and 255; 0: classes are stored from 1
  LabelFormat label_format = LabelFormat::Ids;  // colour masks map classes.csv's colours to classes
  std::filesystem::path label_map;     // ids: file of `STORED CLASS` lines (see read_label_map); empty = none
  std::vector<Rgb> void_colors;        // colour masks: void colours; default black, unless a class is black
  PseudoLabelOptions pseudo;
  std::filesystem::path out;           // run folder: config.json, metrics.csv, curves.png, last.pt, best.pt
  bool resume = false;                 // continue the run in `out`: same options (config.json) but `epochs`
  uint64_t seed = 0;
  DistributedOptions distributed;      // not recorded in config.json, but its world_size, which a resume must keep
  torch::Device device = torch::kCPU;
  Precision precision = Precision::Float32;  // bf16: bf16 compute, fp32 weights and loss
  std::vector<std::string> command_line;     // how the run was started, for config.json; not an option
};

// Every check of the options that needs no data: OptionErrors named after the fields above.
void validate(const TrainOptions& options);

// The options as JSON, keys named after the fields above (`pseudo.threshold`, ...), as a run's
// config.json holds them; `out`, `resume`, `distributed`, `device` and `command_line` are left out:
// they say where a run lives and runs, not what it is. options_from_json sets the keys present in `options` on `base`;
// an unknown key or a bad value is an OptionError naming the key.
nlohmann::json options_to_json(const TrainOptions& options);
TrainOptions options_from_json(const nlohmann::json& options, TrainOptions base = {});
// The options of a run's config.json (or of a file holding only options); nullopt if `file` does not exist.
std::optional<nlohmann::json> read_run_options(const std::filesystem::path& file);

struct EpochRecord {
  int64_t epoch = 0;
  double train_loss = 0;
  double global_acc = 0, class_avg_acc = 0, miou = 0;  // NaN without a val list
  double seconds = 0;
  double images_per_s = 0;        // labelled images per second, all processes together
  double data_wait_fraction = 0;  // share of the epoch spent waiting for decoded batches
  double pseudo_confident_fraction = 0;  // share of unlabelled pixels that passed tau; NaN without
  double allreduce_wait_fraction = 0;    // share of the epoch spent waiting for other processes' gradients
  bool best = false;              // this epoch's model was saved as best.pt
};

struct StepReport {
  int64_t epoch = 0, epochs = 0;
  int64_t step = 0, steps = 0;  // optimizer steps of this epoch
  double mean_loss = 0;         // over the epoch so far, all processes together
  double images_per_s = 0;      // all processes together
};

struct EarlyStop {
  int64_t epoch = 0;       // the last epoch trained
  int64_t best_epoch = 0;  // the epoch of best.pt
  double best_miou = 0;
};

// What a run tells its caller; each callback is optional.
struct TrainCallbacks {
  // Before the pass that validates and measures the data: how many images, and whether any validate.
  std::function<void(size_t images, bool validation)> checking_data;
  std::function<void(const StepReport&)> step;
  std::function<void(const EpochRecord&)> epoch;      // after the epoch's row and checkpoints are written
  // Training ends before options.epochs because validation mIoU stalled for options.patience epochs
  // (also when a resumed run had already stalled).
  std::function<void(const EarlyStop&)> stopped_early;
};

// Writes out/config.json (when the run starts), out/metrics.csv (a row per epoch), out/curves.png (its
// chart, redrawn each epoch; PLplot's Cairo driver is checked before any work: require_chart_driver in
// report.h), out/last.pt and out/best.pt (best val mIoU, or last without a val list). Returns the
// epochs run by this call (none when a resumed run is complete, or had stopped early and still would).
// Distributed (options.distributed.world_size > 1): every process calls it with the same options; rank
// 0 alone writes into `out`, which a resume reads on every process (a folder every process sees).
std::vector<EpochRecord> train(const TrainOptions& options, const TrainCallbacks& callbacks = {});

}  // namespace segnet

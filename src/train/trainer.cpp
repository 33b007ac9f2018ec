#include <segnet/checkpoint.h>
#include <segnet/error.h>
#include <segnet/evaluate.h>
#include <segnet/metrics.h>
#include <segnet/pretrained.h>
#include <segnet/report.h>
#include <segnet/runtime.h>
#include <segnet/train.h>

#include "common/clock.h"
#include "data/augmentation.h"
#include "data/loader.h"
#include "distributed/process_group.h"
#include "train/config.h"
#include "train/data_parallel.h"
#include "train/losses.h"
#include "train/run_directory.h"
#include "train/schedule.h"
#include "train/step.h"
#include "train/teacher.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <numeric>

namespace segnet {

namespace {

std::vector<ClassInfo> dataset_classes(const TrainOptions& o) {
  const fs::path csv = o.data / "classes.csv";
  const bool binary = o.task == Task::Binary;
  if (fs::exists(csv)) {
    auto classes = read_classes_csv(csv);
    const int64_t expected = binary ? 2 : o.num_classes.value_or(static_cast<int64_t>(classes.size()));
    if (expected != static_cast<int64_t>(classes.size()))
      throw Error(csv, "lists " + std::to_string(classes.size()) + " classes but " +
                           (binary ? std::string("a binary task has 2") : "num_classes is " + std::to_string(expected)));
    return classes;
  }
  if (binary) return {{"background", {0, 0, 0}}, {"foreground", {255, 40, 40}}};
  if (!o.num_classes) throw OptionError("num_classes", "is needed: " + csv.string() + " does not exist");
  return default_classes(*o.num_classes);
}

std::vector<float> class_weights(const ClassWeights& choice, const DatasetStatistics& stats, int64_t num_classes) {
  switch (choice.kind) {
    case ClassWeights::Kind::MedianFrequency: return median_frequency_weights(stats.class_pixels, stats.present_pixels);
    case ClassWeights::Kind::Uniform: return std::vector<float>(num_classes, 1.f);
    case ClassWeights::Kind::Given: break;
  }
  if (static_cast<int64_t>(choice.given.size()) != num_classes)
    throw OptionError("class_weights", "gives " + std::to_string(choice.given.size()) + " weights for " +
                                           std::to_string(num_classes) + " classes");
  return choice.given;
}

double base_lr(const TrainOptions& o) { return o.lr.value_or(o.optimizer == Optimizer::Sgd ? 0.01 : 1e-3); }

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainOptions& o, SegNet& model) {
  if (o.optimizer == Optimizer::Sgd)
    return std::make_unique<torch::optim::SGD>(
        model->parameters(), torch::optim::SGDOptions(base_lr(o)).momentum(0.9).weight_decay(o.weight_decay));
  return std::make_unique<torch::optim::Adam>(model->parameters(),
                                              torch::optim::AdamOptions(base_lr(o)).weight_decay(o.weight_decay));
}

// How the dataset's labels map to classes, from the options and the class list.
LabelSpec dataset_label_spec(const TrainOptions& o, const std::vector<ClassInfo>& classes) {
  const int64_t count = static_cast<int64_t>(classes.size());
  LabelSpec spec = o.task == Task::Binary ? make_binary_label_spec(o.void_label) : make_label_spec(count, o.void_label);
  if (!o.label_map.empty()) spec.value_map = read_label_map(o.label_map, count);
  spec.format = o.label_format;
  if (spec.format == LabelFormat::Color) {
    for (const auto& c : classes) spec.class_colors.push_back(c.rgb);
    for (size_t a = 0; a < classes.size(); ++a)
      for (size_t b = a + 1; b < classes.size(); ++b)
        if (classes[a].rgb == classes[b].rgb)
          throw Error(o.data / "classes.csv", "classes " + classes[a].name + " and " + classes[b].name +
                                                  " have the same colour: colour masks cannot tell them apart");
    const bool black_is_a_class = std::count(spec.class_colors.begin(), spec.class_colors.end(), Rgb{0, 0, 0}) > 0;
    spec.void_colors = o.void_colors.empty() && !black_is_a_class ? std::vector<Rgb>{{0, 0, 0}} : o.void_colors;
    for (const Rgb& v : spec.void_colors)
      if (std::count(spec.class_colors.begin(), spec.class_colors.end(), v))
        throw OptionError("void_colors", "(" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + ", " +
                                             std::to_string(v[2]) + ") is a class's colour in classes.csv");
  }
  return spec;
}

// An explicitly named validation list must exist; the default val.txt may be absent (no validation).
std::vector<SamplePaths> validation_samples(const TrainOptions& o) {
  if (!o.val_list) return fs::exists(o.data / "val.txt") ? read_list(o.data, o.data / "val.txt") : std::vector<SamplePaths>{};
  const fs::path list = fs::path(*o.val_list).is_absolute() ? fs::path(*o.val_list) : o.data / *o.val_list;
  if (!fs::is_regular_file(list)) throw OptionError("val_list", list.string() + " does not exist");
  return read_list(o.data, list);
}

// Every process of a distributed run must train the same run: an Error on all of them naming the first
// option that differs from rank 0's.
void check_same_options_everywhere(ProcessGroup& group, const TrainOptions& o) {
  const auto all = group.exchange("options", options_to_json(o).dump());
  const nlohmann::json first = nlohmann::json::parse(all[0]);
  for (size_t r = 1; r < all.size(); ++r) {
    const nlohmann::json other = nlohmann::json::parse(all[r]);
    for (const auto& [key, value] : first.items())
      if (other.value(key, nlohmann::json()) != value)
        throw OptionError(key, "differs between the processes: " + value.dump() + " on rank 0, " +
                                   other.value(key, nlohmann::json()).dump() + " on rank " + std::to_string(r));
  }
}

struct InitialWeights {
  SegNet model{nullptr};
  std::optional<Normalization> norm;  // what the weights expect; nullopt: the dataset's own
};

// A new run's model: random, then what options.encoder_weights or options.init give.
InitialWeights initial_weights(const TrainOptions& o, int64_t classes) {
  torch::manual_seed(o.seed);
  InitialWeights start{SegNet(SegNetOptions(o.model, o.task == Task::Binary ? 1 : classes)
                                  .upsampling(o.upsampling)
                                  .dilation(o.dilation)),
                       std::nullopt};
  if (!o.encoder_weights.empty()) {
    load_vgg16_bn_encoder(start.model, o.encoder_weights);
    start.norm = imagenet_normalization();
  }
  if (!o.init.empty()) {
    CheckpointReader trained(o.init);
    init_from(start.model, trained.model(), o.init);
    start.norm = trained.info().norm;
  }
  return start;
}

struct NewRun {
  Checkpoint start;
  DatasetStatistics stats;
};

// What a new run is: classes, label spec and normalisation from the data (every file is checked), and
// a freshly initialised model.
NewRun new_run(const TrainOptions& o, const std::vector<SamplePaths>& train_samples,
               const std::vector<SamplePaths>& val_samples, const TrainCallbacks& callbacks) {
  const auto classes = dataset_classes(o);
  const LabelSpec spec = dataset_label_spec(o, classes);
  // Before the slow pass over the data, so that a wrong weights file fails at once.
  InitialWeights start = initial_weights(o, static_cast<int64_t>(classes.size()));
  if (callbacks.checking_data) callbacks.checking_data(train_samples.size() + val_samples.size(), !val_samples.empty());
  const DatasetStatistics stats = compute_statistics(train_samples, spec, o.input_range, o.size);
  // 0/255 masks read as class ids: the 255s are void and every pixel left is class 0.
  const int64_t labelled = std::accumulate(stats.class_pixels.begin(), stats.class_pixels.end(), int64_t(0));
  if (o.task == Task::Multiclass && spec.num_classes > 1 && labelled == stats.class_pixels[0])
    throw OptionError("task", "every training label is class 0 or void (0/255 masks?): binary masks need the binary task");
  for (const auto& s : val_samples) read_sample(s, spec, o.input_range);  // fail now, not after the first epoch
  NewRun run{{}, stats};
  ModelInfo& info = run.start.info;
  info = {o.model,    o.task,     o.upsampling,
          o.dilation, classes,    spec.void_labels,
          o.size,     stats.norm, class_weights(o.class_weights, stats, spec.num_classes),
          spec.format, spec.value_map, spec.void_colors, /*activation_ranges=*/{}, o.input_range};
  run.start.model = std::move(start.model);
  info.norm = start.norm.value_or(stats.norm);
  return run;
}

struct EpochResult {
  double loss_sum = 0, confident_sum = 0;
  int64_t images = 0, steps = 0;  // images of all processes
  double wait_seconds = 0, allreduce_seconds = 0;
};

EpochResult train_epoch(const TrainOptions& o, int64_t epoch, SegNet& model, torch::optim::Optimizer& optimizer,
                        const BatchLoader& loader, const Objective& objective, DataParallel& parallel,
                        PseudoLabelTeacher* teacher, SegNet average, const TrainCallbacks& callbacks) {
  const auto start = std::chrono::steady_clock::now();
  const double allreduce_before = parallel.wait_seconds();
  const uint64_t seed = epoch_seed(o.seed, epoch);
  model->train();
  if (teacher) teacher->begin_epoch(seed);
  const int64_t steps = loader.steps_per_epoch();
  EpochResult r;
  auto batches = loader.epoch(seed);
  for (LoaderStep step; batches.next(step);) {
    const int64_t done = (epoch - 1) * steps + r.steps;  // optimizer steps before this one
    const double lr = scheduled_lr(o.lr_schedule, base_lr(o), done, o.epochs * steps);
    for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
    auto* pseudo = teacher ? &teacher->begin_step(epoch - 1 + double(r.steps) / steps) : nullptr;
    const auto totals = train_step(model, optimizer, step, objective, o.precision, o.device, parallel,
                                   seed * 7919 + static_cast<uint64_t>(r.steps), pseudo);
    if (teacher) teacher->follow(model);
    if (average) ema_update(average, model, model_ema_decay_at(o.model_ema_decay, done), /*average_statistics=*/true);
    if (!std::isfinite(totals.loss))
      throw Error("training diverged (loss " + std::to_string(totals.loss) + "); lower the learning rate");
    r.confident_sum += totals.confident_fraction;
    r.loss_sum += totals.loss * step.images;
    r.images += step.images;
    ++r.steps;
    if (callbacks.step)
      callbacks.step({epoch, o.epochs, r.steps, steps, r.loss_sum / r.images, r.images / seconds_since(start)});
  }
  r.wait_seconds = batches.wait_seconds();
  r.allreduce_seconds = parallel.wait_seconds() - allreduce_before;
  return r;
}

EpochRecord record_of(int64_t epoch, const EpochResult& e, double train_seconds, bool pseudo_labels) {
  EpochRecord r;
  r.epoch = epoch;
  r.train_loss = e.loss_sum / e.images;
  r.images_per_s = e.images / train_seconds;
  r.data_wait_fraction = e.wait_seconds / train_seconds;
  r.pseudo_confident_fraction = pseudo_labels ? e.confident_sum / e.steps : std::nan("");
  r.allreduce_wait_fraction = e.allreduce_seconds / train_seconds;
  r.global_acc = r.class_avg_acc = r.miou = std::nan("");
  return r;
}

// The validation metrics of the model as it is now. Distributed, each process scores every
// group->size()-th image and the confusion matrices are summed.
void score(EpochRecord& r, Segmenter validator, const std::vector<SamplePaths>& val_samples, const LabelSpec& spec,
           ProcessGroup* group) {
  std::vector<SamplePaths> mine;
  for (size_t i = group ? static_cast<size_t>(group->rank()) : 0; i < val_samples.size(); i += group ? group->size() : 1)
    mine.push_back(val_samples[i]);
  ConfusionMatrix m(spec.num_classes);  // mIoU alone: boundary F1 and per-image scores are eval's
  for_each_prediction(validator, mine, spec,
                      [&](size_t, const torch::Tensor& prediction, const torch::Tensor& truth) { m.add(prediction, truth); });
  if (group) {
    auto counts = torch::tensor(m.counts(), torch::kLong);
    group->sum(counts);
    m = ConfusionMatrix(m.num_classes(), std::vector<int64_t>(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel()));
  }
  r.global_acc = m.global_accuracy();
  r.class_avg_acc = m.class_average_accuracy();
  r.miou = m.mean_iou();
}

}  // namespace

void validate(const TrainOptions& o) {
  if (o.data.empty()) throw OptionError("data", "is needed: the dataset folder");
  if (o.epochs < 1) throw OptionError("epochs", "must be at least 1");
  if (o.patience < 0) throw OptionError("patience", "must be at least 0 (0: never stop early)");
  if (o.precision == Precision::Int8) throw OptionError("precision", "int8 is for inference only; train in fp32 or bf16");
  if (o.batch < 1) throw OptionError("batch", "must be at least 1");
  if (o.input_range) validate(*o.input_range);
  if (o.lr && !(*o.lr > 0 && std::isfinite(*o.lr))) throw OptionError("lr", "must be positive and finite");
  if (!(o.weight_decay >= 0 && std::isfinite(o.weight_decay)))
    throw OptionError("weight_decay", "must be finite and at least 0");
  if (!(o.model_ema_decay >= 0 && o.model_ema_decay < 1)) throw OptionError("model_ema_decay", "must be in [0, 1)");
  if (o.loss && !loss_fits(*o.loss, o.task))
    throw OptionError("loss", "'" + to_string(*o.loss) + "' does not train a " + to_string(o.task) +
                                  " task (" + to_string(o.task) + ": " + losses_for(o.task) + ")");
  if (!is_image_size(o.size))
    throw OptionError("size", to_string(o.size) + " is impossible (each side must be 1.." + std::to_string(kMaxImageSide) + ")");
  check_training_size(o.model, o.size.height, o.size.width);
  validate(o.augment);
  if (o.out.empty()) throw OptionError("out", "is needed: the run folder");
  const PseudoLabelOptions& p = o.pseudo;
  if (!(p.threshold > 0 && p.threshold <= 1)) throw OptionError("pseudo.threshold", "must be in (0, 1]");
  if (!(p.class_share >= 0 && p.class_share <= 1)) throw OptionError("pseudo.class_share", "must be in [0, 1]");
  validate_scale_range(p.min_scale, p.max_scale, "pseudo");
  if (!(p.weight >= 0)) throw OptionError("pseudo.weight", "must be at least 0");
  if (p.rampup_epochs < 0) throw OptionError("pseudo.rampup_epochs", "must be at least 0");
  if (!(p.ema_decay >= 0 && p.ema_decay < 1)) throw OptionError("pseudo.ema_decay", "must be in [0, 1)");
  validate(SegNetOptions(o.model, o.task == Task::Binary ? 1 : o.num_classes.value_or(2)).dilation(o.dilation));
  if (!o.encoder_weights.empty() && !has_vgg16_encoder(o.model))
    throw OptionError("encoder_weights", "are VGG16 weights, and model '" + to_string(o.model) +
                                             "' has no VGG16 encoder (segnet and bayesian-segnet have)");
  if (!o.encoder_weights.empty() && !o.init.empty())
    throw OptionError("init", "replaces every weight, encoder_weights too: give one of them");
  if (o.num_classes) make_label_spec(*o.num_classes, o.void_label);
  if (o.label_format == LabelFormat::Color && o.task == Task::Binary)
    throw OptionError("label_format", "colour masks need the multiclass task");
  if (o.label_format == LabelFormat::Color && !o.label_map.empty())
    throw OptionError("label_map", "maps stored ids; colour masks map to classes through classes.csv");
  if (!o.label_map.empty() && o.void_label) throw OptionError("void_label", "the label map says which values are void");
  if (!o.void_colors.empty() && o.label_format != LabelFormat::Color)
    throw OptionError("void_colors", "apply to colour masks only");
  if (o.void_label && o.label_format == LabelFormat::Color)
    throw OptionError("void_label", "colour masks mark void with void_colors");
  for (const float w : o.class_weights.given)
    if (!(std::isfinite(w) && w >= 0))
      throw OptionError("class_weights", std::to_string(w) + " is not a finite weight >= 0");
  if (o.accumulate < 1) throw OptionError("accumulate", "must be at least 1");
  const DistributedOptions& d = o.distributed;
  if (d.world_size < 1 || d.world_size > kMaxProcesses)
    throw OptionError("distributed.world_size",
                      "must be in 1.." + std::to_string(kMaxProcesses) + ", got " + std::to_string(d.world_size));
  if (d.rank < 0 || d.rank >= d.world_size)
    throw OptionError("distributed.rank", std::to_string(d.rank) + " is not in 0.." + std::to_string(d.world_size - 1) +
                                              " (world size " + std::to_string(d.world_size) + ")");
  if (d.master_port < 1 || d.master_port > 65535)
    throw OptionError("distributed.master_port", std::to_string(d.master_port) + " is not a port (1..65535)");
  if (!(d.timeout_seconds > 0)) throw OptionError("distributed.timeout_seconds", "must be positive");
  if (!(d.bucket_megabytes > 0)) throw OptionError("distributed.bucket_megabytes", "must be positive");
  check_device(o.device);
}

std::vector<EpochRecord> train(const TrainOptions& o, const TrainCallbacks& callbacks) {
  validate(o);
  std::unique_ptr<ProcessGroup> group;
  if (o.distributed.world_size > 1) {
    group = std::make_unique<ProcessGroup>(o.distributed);
    check_same_options_everywhere(*group, o);
  }
  const bool writer = !group || group->rank() == 0;
  const RunDirectory run(o.out);

  // Every process prepares the run; if one fails, all stop with its error.
  std::optional<CheckpointReader> last;
  Checkpoint start;
  std::vector<SamplePaths> train_samples, val_samples, unlabeled;
  std::exception_ptr failure;
  try {
    if (writer) require_chart_driver(curves_path(o.out));
    train_samples = find_samples(o.data, o.train_list);
    val_samples = validation_samples(o);
    if (o.patience > 0 && val_samples.empty())
      throw OptionError("patience", "needs validation images to watch: " + (o.data / "val.txt").string() +
                                        " does not exist and no validation list is given");
    if (!o.pseudo.unlabeled.empty()) unlabeled = find_unlabeled(o.data, o.pseudo.unlabeled);
    if (o.resume) {
      last.emplace(run.resume(o));
      start = {last->info(), last->state(), last->model()};
    } else {
      if (writer) run.refuse_existing_run();  // before the slow pass over the data
      NewRun fresh = new_run(o, train_samples, val_samples, callbacks);
      if (writer) run.create(run_config(o, fresh.start.info, fresh.stats, train_samples.size(), val_samples.size()));
      start = std::move(fresh.start);
    }
  } catch (...) {
    failure = std::current_exception();
  }
  if (group) group->agree("setup", failure);
  else if (failure) std::rethrow_exception(failure);
  if (last && writer) run.rewind(last->state().epoch, o.epochs, o.patience);

  const ModelInfo& info = start.info;
  TrainState& state = start.state;
  SegNet& model = start.model;
  state.optimizer = o.optimizer;
  const LabelSpec spec = info.label_spec();
  // With model_ema_decay, `average` is what is validated and saved as the model, `model` what the
  // optimizer trains (a resumed run's "model" is the average; its "trained" weights go on training).
  SegNet average{nullptr};
  if (o.model_ema_decay > 0) {
    average = copy_model(model);
    if (last) last->load_trained(model);
    average->to(o.device);
    to_memory_format(*average, fastest_memory_format(o.device, o.precision));
  }
  model->to(o.device);
  to_memory_format(*model, fastest_memory_format(o.device, o.precision));
  DataParallel parallel(model, group.get(), o.accumulate, o.distributed);
  BatchLoader::Options loading;
  loading.size = o.size;
  loading.batch_size = o.batch;
  loading.slots = parallel.slots();
  loading.first_slot = parallel.slot(0);
  loading.local_slots = parallel.local_slots();
  loading.shuffle = true;
  loading.input_range = info.input_range;
  loading.pad_rgb = cv::Scalar(255 * info.norm.mean[0], 255 * info.norm.mean[1], 255 * info.norm.mean[2]);
  std::optional<PseudoLabelTeacher> teacher;
  if (!unlabeled.empty()) {
    SegNet teacher_model = copy_model(model);
    if (last) last->load_teacher(teacher_model);
    BatchLoader::Options weak_view = loading;  // the teacher's view: flips only
    weak_view.augment = augment_preset(o.augment.flip ? AugmentPreset::Flip : AugmentPreset::None);
    teacher.emplace(o.pseudo, BatchLoader(unlabeled, spec, info.norm, weak_view), teacher_model, o.device, o.precision);
  }
  loading.augment = o.augment;
  auto optimizer = make_optimizer(o, model);
  if (last) last->load_optimizer(*optimizer);
  last.reset();  // frees the file's bytes

  const BatchLoader loader(train_samples, spec, info.norm, loading);
  if (loader.steps_per_epoch() == 0)
    throw OptionError("batch", "the " + std::to_string(train_samples.size()) +
                                   " training images are fewer than the micro-batches of a step (accumulate x processes)");
  const Objective objective{o.task, o.loss.value_or(default_loss(o.task)), torch::tensor(info.class_weights).to(o.device)};
  std::vector<EpochRecord> records;
  const auto stalled = [&] { return o.patience > 0 && state.epoch - state.best_epoch >= o.patience; };
  for (int64_t epoch = state.epoch + 1; epoch <= o.epochs && !stalled(); ++epoch) {
    const auto start_time = std::chrono::steady_clock::now();
    const EpochResult e =
        train_epoch(o, epoch, model, *optimizer, loader, objective, parallel, teacher ? &*teacher : nullptr, average, callbacks);
    EpochRecord r = record_of(epoch, e, seconds_since(start_time), teacher.has_value());
    SegNet& saved = average ? average : model;
    if (!val_samples.empty())
      score(r, Segmenter(info, saved, o.device, SegmenterOptions{o.precision}), val_samples, spec, group.get());
    r.seconds = seconds_since(start_time);
    r.best = val_samples.empty() || r.miou > state.best_miou;
    state.epoch = epoch;
    if (r.best) state.best_miou = r.miou, state.best_epoch = epoch;
    if (writer) run.record(r, info, state, saved, *optimizer, teacher ? &teacher->model() : nullptr, average ? &model : nullptr);
    if (callbacks.epoch) callbacks.epoch(r);
    records.push_back(r);
  }
  if (state.epoch < o.epochs && stalled() && callbacks.stopped_early)
    callbacks.stopped_early({state.epoch, state.best_epoch, state.best_miou});
  return records;
}

}  // namespace segnet

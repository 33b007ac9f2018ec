#include "progress.h"

#include <segnet/checkpoint.h>
#include <segnet/error.h>
#include <segnet/evaluate.h>
#include <segnet/files.h>
#include <segnet/metrics.h>
#include <segnet/train.h>

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>

namespace segnet {

namespace {

constexpr const char* kCsvHeader =
    "epoch,train_loss,val_global_acc,val_class_avg_acc,val_miou,seconds,images_per_s,data_wait_fraction,"
    "pseudo_confident_fraction";

std::vector<ClassInfo> dataset_classes(const TrainOptions& o) {
  const fs::path csv = o.data / "classes.csv";
  const bool binary = o.task == "binary";
  if (fs::exists(csv)) {
    auto classes = read_classes_csv(csv);
    const int64_t expected = binary ? 2 : o.num_classes.value_or(static_cast<int64_t>(classes.size()));
    if (expected != static_cast<int64_t>(classes.size()))
      throw Error(csv, "lists " + std::to_string(classes.size()) + " classes but " +
                           (binary ? std::string("a binary task has 2") : "--num-classes is " + std::to_string(expected)));
    return classes;
  }
  if (binary) return {{"background", {0, 0, 0}}, {"foreground", {255, 40, 40}}};
  if (!o.num_classes) throw Error(csv, "not found; give --num-classes N");
  make_label_spec(*o.num_classes, o.void_label);  // validates the count
  return default_classes(*o.num_classes);
}

std::vector<float> class_weights(const TrainOptions& o, const DatasetStatistics& stats, int64_t num_classes) {
  if (o.class_weights == "median") return median_frequency_weights(stats.class_pixels, stats.present_pixels);
  if (o.class_weights == "none") return std::vector<float>(num_classes, 1.f);
  return read_class_weights(o.class_weights, num_classes);
}

double base_lr(const TrainOptions& o) { return o.lr.value_or(o.optimizer == "sgd" ? 0.01 : 1e-3); }

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainOptions& o, SegNet& model) {
  if (o.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(
        model->parameters(), torch::optim::SGDOptions(base_lr(o)).momentum(0.9).weight_decay(o.weight_decay));
  if (o.optimizer == "adam")
    return std::make_unique<torch::optim::Adam>(
        model->parameters(), torch::optim::AdamOptions(base_lr(o)).weight_decay(o.weight_decay));
  throw Error("--optimizer: '" + o.optimizer + "' is not sgd or adam");
}

void set_lr(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

std::string format_row(const EpochRecord& r) {
  std::ostringstream s;
  s << r.epoch << ',' << std::setprecision(6) << r.train_loss << ',' << r.global_acc << ',' << r.class_avg_acc << ','
    << r.miou << ',' << std::setprecision(4) << r.seconds << ',' << r.images_per_s << ',' << r.data_wait_fraction << ','
    << r.pseudo_confident_fraction;
  return s.str();
}

// Keeps the rows of epochs up to `epoch` (a run stopped after writing a row but before its checkpoint
// repeats that epoch on resume).
void truncate_metrics(const fs::path& csv, int64_t epoch) {
  std::ifstream in(csv);
  std::string line, kept = std::string(kCsvHeader) + "\n";
  for (std::getline(in, line); std::getline(in, line);)
    if (!line.empty() && std::stoll(line.substr(0, line.find(','))) <= epoch) kept += line + "\n";
  write_text(csv, kept);
}

void append_row(const fs::path& csv, const EpochRecord& r) {
  const bool fresh = !fs::exists(csv);
  std::ofstream out(csv, std::ios::app);
  if (fresh) out << kCsvHeader << '\n';
  out << format_row(r) << '\n';
  if (!out.flush()) throw Error(csv, "cannot append");
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

torch::Tensor segmentation_loss(const torch::Tensor& logits, const torch::Tensor& labels, const Objective& o) {
  namespace F = torch::nn::functional;
  if (!o.binary)
    return F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().weight(o.class_weights).ignore_index(kIgnoreLabel));
  const auto valid = labels != kIgnoreLabel;
  const auto target = labels.clamp_max(1).to(torch::kFloat);
  const auto z = logits.squeeze(1);
  torch::Tensor loss = torch::zeros({}, logits.options());
  if (o.loss == "bce" || o.loss == "bce+dice") {
    const auto w = o.class_weights.index({labels.clamp_max(1)}) * valid;
    const auto per_pixel = F::binary_cross_entropy_with_logits(z, target, F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
    loss = loss + (per_pixel * w).sum() / w.sum().clamp_min(1e-6);
  }
  if (o.loss == "dice" || o.loss == "bce+dice") {
    const auto p = torch::sigmoid(z) * valid, t = target * valid;
    loss = loss + 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1);
  }
  return loss;
}

double scheduled_lr(const std::string& schedule, double base_lr, int64_t step, int64_t total_steps) {
  if (schedule == "constant") return base_lr;
  if (schedule == "poly") return base_lr * std::pow(1.0 - double(std::min(step, total_steps)) / total_steps, 0.9);
  throw Error("--lr-schedule: '" + schedule + "' is not poly or constant");
}

torch::Tensor confident_labels(const torch::Tensor& probabilities, double threshold) {
  const int64_t class_dim = probabilities.dim() == 4 ? 1 : 0;
  const auto [top, ids] = probabilities.max(class_dim);
  return ids.masked_fill(top < threshold, kIgnoreLabel);
}

AugmentedBatch strong_view(const torch::Tensor& x, const torch::Tensor& labels) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  auto opts = x.options().dtype(torch::kFloat);
  auto y = x * (0.6 + 0.8 * torch::rand({n, 1, 1, 1}, opts)) + (torch::rand({n, 1, 1, 1}, opts) - 0.5) * 0.8 +
           (torch::rand({n, 3, 1, 1}, opts) - 0.5) * 0.4;
  const auto blurred = torch::avg_pool2d(y, 3, 1, 1, /*ceil_mode=*/false, /*count_include_pad=*/false);
  y = torch::where(torch::rand({n, 1, 1, 1}, opts) < 0.5, blurred, y);
  const double box_h = h * std::sqrt(0.5), box_w = w * std::sqrt(0.5);
  const auto rows = torch::arange(h, opts).view({1, 1, h, 1}), cols = torch::arange(w, opts).view({1, 1, 1, w});
  const auto top = torch::rand({n, 1, 1, 1}, opts) * (h - box_h), left = torch::rand({n, 1, 1, 1}, opts) * (w - box_w);
  const auto inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w);
  return {torch::where(inside, y.roll(1, 0), y), torch::where(inside.squeeze(1), labels.roll(1, 0), labels)};
}

namespace {

void ema_update(SegNet& teacher, SegNet& student, double decay) {
  torch::NoGradGuard no_grad;
  auto params = student->named_parameters(), buffers = student->named_buffers();
  for (auto& p : teacher->named_parameters()) p.value().mul_(decay).add_(params[p.key()], 1.0 - decay);
  for (auto& b : teacher->named_buffers()) b.value().copy_(buffers[b.key()]);
}

// Gaussian ramp-up (Laine & Aila): exp(-5 (1 - t)^2) as t goes 0 -> 1 over the ramp.
double ramp(double progress_epochs, int64_t rampup_epochs) {
  if (rampup_epochs <= 0 || progress_epochs >= rampup_epochs) return 1.0;
  const double t = progress_epochs / rampup_epochs;
  return std::exp(-5.0 * (1.0 - t) * (1.0 - t));
}

// Running statistics must describe real images at inference, not strong views: while alive, batch
// norm layers normalise with the batch's statistics but leave their running averages as they are.
class FrozenRunningStatistics {
 public:
  explicit FrozenRunningStatistics(SegNet& model) {
    for (const auto& module : model->modules(/*include_self=*/false))
      if (auto* bn = module->as<torch::nn::BatchNorm2dImpl>()) {
        saved_.emplace_back(bn, bn->options.momentum());
        bn->options.momentum(0.0);  // running = (1 - 0) * running + 0 * batch
      }
  }
  ~FrozenRunningStatistics() {
    for (auto& [bn, momentum] : saved_) bn->options.momentum(momentum);
  }
  FrozenRunningStatistics(const FrozenRunningStatistics&) = delete;
  FrozenRunningStatistics& operator=(const FrozenRunningStatistics&) = delete;

 private:
  std::vector<std::pair<torch::nn::BatchNorm2dImpl*, c10::optional<double>>> saved_;
};

// The unlabelled half of a step: the teacher labels the weak view, and the student learns the
// confident labels from the strong view in a pass of its own, so that strong views never enter the
// labelled batch's normalisation.
torch::Tensor pseudo_label_loss(SegNet& model, PseudoLabelStep& p, const Objective& objective, Precision precision,
                                torch::Device device) {
  const auto channels_last = at::MemoryFormat::ChannelsLast;
  const auto weak = p.unlabeled.images.to(device);
  torch::Tensor targets;
  {
    torch::NoGradGuard no_grad;
    AutocastGuard autocast(precision, device);
    const auto z = p.teacher->forward(weak.contiguous(channels_last)).to(torch::kFloat);
    const auto probs = objective.binary ? torch::cat({1 - torch::sigmoid(z), torch::sigmoid(z)}, 1) : torch::softmax(z, 1);
    targets = confident_labels(probs, p.threshold);
  }
  p.confident_fraction = (targets != kIgnoreLabel).to(torch::kFloat).mean().item<double>();
  if (p.confident_fraction == 0 || p.weight == 0) return torch::zeros({}, weak.options());  // nothing to learn
  const AugmentedBatch strong = strong_view(weak, targets);
  // Scaled by the confident share, as FixMatch averages over all unlabelled pixels: a handful of
  // confident pixels early in training must not carry the full weight lambda.
  const double share = (strong.labels != kIgnoreLabel).to(torch::kFloat).mean().item<double>();
  if (share == 0) return torch::zeros({}, weak.options());
  torch::Tensor logits;
  {
    FrozenRunningStatistics frozen(model);
    AutocastGuard autocast(precision, device);
    logits = model->forward(strong.images.contiguous(channels_last));
  }
  // Unweighted: the teacher learnt with the class weights, so its labels already favour rare classes
  // (where they are least precise); weighting them again amplifies their noise.
  Objective unweighted = objective;
  unweighted.class_weights = torch::ones_like(objective.class_weights);
  return p.weight * share * segmentation_loss(logits.to(torch::kFloat), strong.labels, unweighted);
}

}  // namespace

double train_step(SegNet& model, torch::optim::Optimizer& optimizer, const Batch& batch, const Objective& objective,
                  Precision precision, torch::Device device, PseudoLabelStep* pseudo) {
  // Gradients are dropped rather than zeroed, so that no gradient memory is held through the
  // forward pass (LibTorch 1.13's zero_grad() keeps and zeroes them).
  for (auto& p : model->parameters()) p.mutable_grad().reset();
  torch::Tensor logits;
  {
    AutocastGuard autocast(precision, device);
    logits = model->forward(batch.images.to(device).contiguous(at::MemoryFormat::ChannelsLast));
  }
  auto loss = segmentation_loss(logits.to(torch::kFloat), batch.labels.to(device), objective);
  if (pseudo) loss = loss + pseudo_label_loss(model, *pseudo, objective, precision, device);
  loss.backward();
  optimizer.step();
  if (pseudo) ema_update(pseudo->teacher, model, pseudo->ema_decay);
  return loss.item<double>();
}

std::vector<EpochRecord> train(const TrainOptions& o) {
  if (o.epochs < 1) throw Error("--epochs: must be at least 1");
  if (o.batch < 1) throw Error("--batch: must be at least 1");
  if (o.task != "multiclass" && o.task != "binary") throw Error("--task: '" + o.task + "' is not multiclass or binary");
  const bool binary = o.task == "binary";
  const std::string loss_name = o.loss.empty() ? (binary ? "bce" : "ce") : o.loss;
  if (binary ? loss_name != "bce" && loss_name != "dice" && loss_name != "bce+dice" : loss_name != "ce")
    throw Error("--loss: '" + loss_name + "' does not apply (binary: bce, dice, bce+dice; multiclass: ce)");
  if (!(o.pseudo_threshold > 0 && o.pseudo_threshold <= 1)) throw Error("--pseudo-threshold: must be in (0, 1]");
  if (o.pseudo_weight < 0 || o.pseudo_rampup < 0) throw Error("--pseudo-weight and --pseudo-rampup must be >= 0");
  if (!(o.ema_decay >= 0 && o.ema_decay < 1)) throw Error("--ema-decay: must be in [0, 1)");
  scheduled_lr(o.lr_schedule, 1.0, 0, 1);  // validates the name
  SegNet(SegNetOptions(o.model, 2).decoder(o.decoder).dilation(o.dilation));  // validates before any slow work
  const auto train_samples = find_samples(o.data, o.train_list);
  const fs::path val_list = o.data / o.val_list;
  const auto val_samples = fs::exists(val_list) ? read_list(o.data, val_list) : std::vector<SamplePaths>{};
  const auto unlabeled = o.unlabeled.empty() ? std::vector<SamplePaths>{} : find_unlabeled(o.data, o.unlabeled);
  const fs::path last = o.out / "last.pt", best = o.out / "best.pt", csv = o.out / "metrics.csv";

  ModelInfo info;
  TrainState state;
  SegNet model{nullptr};
  if (o.resume) {
    Checkpoint ck = load_checkpoint(last);
    if (ck.info.model != o.model || ck.info.task != o.task || ck.info.decoder != o.decoder || ck.info.dilation != o.dilation)
      throw Error(last, "is a run of another model ('" + ck.info.model + "', task " + ck.info.task + ", decoder " +
                            ck.info.decoder + ")");
    if (ck.state.optimizer != o.optimizer)
      throw Error(last, "was trained with " + ck.state.optimizer + ", not " + o.optimizer);
    info = ck.info;
    state = ck.state;
    model = ck.model;
    truncate_metrics(csv, state.epoch);
  } else {
    if (fs::exists(last))
      throw Error(last, "already holds a run; pass --resume to continue it or choose another --out");
    const auto classes = dataset_classes(o);
    const LabelSpec spec = binary ? make_binary_label_spec(o.void_label)
                                  : make_label_spec(static_cast<int64_t>(classes.size()), o.void_label);
    if (o.progress) std::fprintf(stderr, "checking %zu training images\n", train_samples.size());
    const DatasetStatistics stats = compute_statistics(train_samples, spec, o.size);
    for (const auto& s : val_samples) read_sample(s, spec);  // fail now, not after the first epoch
    info = {o.model,         o.task,   o.decoder,  o.dilation,
            classes,         spec.void_labels, o.size, stats.norm, class_weights(o, stats, spec.num_classes)};
    torch::manual_seed(o.seed);
    model = SegNet(info.options());
    fs::create_directories(o.out);
  }
  state.optimizer = o.optimizer;
  model->to(o.device);
  to_channels_last(*model);
  auto optimizer = make_optimizer(o, model);
  if (o.resume) load_optimizer_state(last, *optimizer);

  const LabelSpec spec = info.label_spec();
  BatchLoader loader(train_samples, spec, info.norm, {o.size, o.batch, /*shuffle=*/true, /*flip=*/true});
  BatchLoader unlabeled_loader(unlabeled, spec, info.norm, {o.size, o.batch, /*shuffle=*/true, /*flip=*/true});
  const Objective objective{binary, loss_name, torch::tensor(info.class_weights).to(o.device)};
  std::optional<PseudoLabelStep> pseudo;
  if (!unlabeled.empty()) {
    pseudo.emplace(PseudoLabelStep{copy_model(model), {}, 0.0, o.pseudo_threshold, o.ema_decay});
    if (o.resume && !load_teacher(last, pseudo->teacher))
      throw Error(last, "holds no pseudo-label teacher: the run was not started with --unlabeled");
    pseudo->teacher->to(o.device);
    to_channels_last(*pseudo->teacher);
    pseudo->teacher->eval();
  }

  std::vector<EpochRecord> records;
  for (int64_t epoch = state.epoch + 1; epoch <= o.epochs; ++epoch) {
    const auto epoch_start = std::chrono::steady_clock::now();
    torch::manual_seed(o.seed * 1000003 + epoch);  // randomness depends on (seed, epoch) alone: resumable
    model->train();
    auto batches = loader.epoch(o.seed * 1000003 + epoch);
    // Unlabelled batches cycle through their own shuffles, seeded by (epoch, cycle).
    int64_t cycle = 0;
    std::optional<BatchLoader::Epoch> unlabeled_batches;
    double confident_sum = 0;
    Progress progress("epoch " + std::to_string(epoch) + "/" + std::to_string(o.epochs) + " batch",
                      loader.batches_per_epoch(), o.progress);
    double loss_sum = 0;
    int64_t images = 0, step = 0;
    Batch batch;
    while (batches.next(batch)) {
      if (pseudo) {
        while (!unlabeled_batches || !unlabeled_batches->next(pseudo->unlabeled))
          unlabeled_batches.emplace(unlabeled_loader.epoch((o.seed * 1000003 + epoch) * 7919 + cycle++));
        pseudo->weight = o.pseudo_weight * ramp(epoch - 1 + double(step) / loader.batches_per_epoch(), o.pseudo_rampup);
      }
      set_lr(*optimizer, scheduled_lr(o.lr_schedule, base_lr(o), (epoch - 1) * loader.batches_per_epoch() + step,
                                      o.epochs * loader.batches_per_epoch()));
      const double l = train_step(model, *optimizer, batch, objective, o.precision, o.device, pseudo ? &*pseudo : nullptr);
      if (pseudo) confident_sum += pseudo->confident_fraction;
      if (!std::isfinite(l)) throw Error("training diverged (loss " + std::to_string(l) + "); lower --lr");
      loss_sum += l * batch.images.size(0);
      images += batch.images.size(0);
      const double rate = images / seconds_since(epoch_start);
      std::ostringstream status;
      status << std::fixed << std::setprecision(4) << "loss " << loss_sum / images << std::setprecision(2) << "  "
             << rate << " img/s";
      progress.update(++step, status.str());
    }
    EpochRecord r;
    r.epoch = epoch;
    r.train_loss = loss_sum / images;
    const double train_seconds = seconds_since(epoch_start);
    r.images_per_s = images / train_seconds;
    r.data_wait_fraction = batches.wait_seconds() / train_seconds;
    r.global_acc = r.class_avg_acc = r.miou = std::nan("");
    r.pseudo_confident_fraction = pseudo ? confident_sum / step : std::nan("");
    if (!val_samples.empty()) {
      Segmenter validator(info, model, o.device, SegmenterOptions{o.precision});
      const ConfusionMatrix m = evaluate(validator, val_samples, spec);
      r.global_acc = m.global_accuracy();
      r.class_avg_acc = m.class_average_accuracy();
      r.miou = m.mean_iou();
    }
    r.seconds = seconds_since(epoch_start);
    std::ostringstream summary;
    summary << std::fixed << std::setprecision(4) << "epoch " << epoch << "/" << o.epochs << "  loss " << r.train_loss
            << "  val G " << r.global_acc << "  C " << r.class_avg_acc << "  mIoU " << r.miou << std::setprecision(2)
            << "  " << r.images_per_s << " img/s  " << std::setprecision(1) << r.seconds << " s";
    progress.finish(summary.str());

    append_row(csv, r);
    state.epoch = epoch;
    const bool improved = val_samples.empty() || r.miou > state.best_miou;
    if (improved) state.best_miou = r.miou, state.best_epoch = epoch;
    save_checkpoint(last, info, model, optimizer.get(), state, pseudo ? &pseudo->teacher : nullptr);
    if (improved) save_checkpoint(best, info, model, nullptr, state);
    records.push_back(r);
  }
  return records;
}

}  // namespace segnet

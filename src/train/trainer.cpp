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
    "epoch,train_loss,val_global_acc,val_class_avg_acc,val_miou,seconds,images_per_s,data_wait_fraction";

std::vector<ClassInfo> dataset_classes(const TrainOptions& o) {
  const fs::path csv = o.data / "classes.csv";
  if (fs::exists(csv)) {
    auto classes = read_classes_csv(csv);
    if (o.num_classes && *o.num_classes != static_cast<int64_t>(classes.size()))
      throw Error(csv, "lists " + std::to_string(classes.size()) + " classes but --num-classes is " +
                           std::to_string(*o.num_classes));
    return classes;
  }
  if (!o.num_classes) throw Error(csv, "not found; give --num-classes N");
  make_label_spec(*o.num_classes, o.void_label);  // validates the count
  return default_classes(*o.num_classes);
}

std::vector<float> class_weights(const TrainOptions& o, const DatasetStatistics& stats, int64_t num_classes) {
  if (o.class_weights == "median") return median_frequency_weights(stats.class_pixels, stats.present_pixels);
  if (o.class_weights == "none") return std::vector<float>(num_classes, 1.f);
  return read_class_weights(o.class_weights, num_classes);
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainOptions& o, SegNet& model) {
  if (o.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(
        model->parameters(), torch::optim::SGDOptions(o.lr.value_or(0.01)).momentum(0.9).weight_decay(o.weight_decay));
  if (o.optimizer == "adam")
    return std::make_unique<torch::optim::Adam>(
        model->parameters(), torch::optim::AdamOptions(o.lr.value_or(1e-3)).weight_decay(o.weight_decay));
  throw Error("--optimizer: '" + o.optimizer + "' is not sgd or adam");
}

std::string format_row(const EpochRecord& r) {
  std::ostringstream s;
  s << r.epoch << ',' << std::setprecision(6) << r.train_loss << ',' << r.global_acc << ',' << r.class_avg_acc << ','
    << r.miou << ',' << std::setprecision(4) << r.seconds << ',' << r.images_per_s << ',' << r.data_wait_fraction;
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

double train_step(SegNet& model, torch::optim::Optimizer& optimizer, const Batch& batch,
                  const torch::Tensor& class_weights, Precision precision, torch::Device device) {
  const auto x = batch.images.to(device).contiguous(at::MemoryFormat::ChannelsLast);
  const auto y = batch.labels.to(device);
  optimizer.zero_grad();
  torch::Tensor logits;
  {
    AutocastGuard autocast(precision, device);
    logits = model->forward(x);
  }
  const auto loss = torch::nn::functional::cross_entropy(
      logits.to(torch::kFloat), y,
      torch::nn::functional::CrossEntropyFuncOptions().weight(class_weights).ignore_index(kIgnoreLabel));
  loss.backward();
  optimizer.step();
  return loss.item<double>();
}

std::vector<EpochRecord> train(const TrainOptions& o) {
  if (o.epochs < 1) throw Error("--epochs: must be at least 1");
  if (o.batch < 1) throw Error("--batch: must be at least 1");
  architecture(o.model);  // validates the name before any slow work
  const auto train_samples = find_samples(o.data, o.train_list);
  const fs::path val_list = o.data / o.val_list;
  const auto val_samples = fs::exists(val_list) ? read_list(o.data, val_list) : std::vector<SamplePaths>{};
  const fs::path last = o.out / "last.pt", best = o.out / "best.pt", csv = o.out / "metrics.csv";

  ModelInfo info;
  TrainState state;
  SegNet model{nullptr};
  if (o.resume) {
    Checkpoint ck = load_checkpoint(last);
    if (ck.info.model != o.model)
      throw Error(last, "is a '" + ck.info.model + "' run, not '" + o.model + "'");
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
    const LabelSpec spec = make_label_spec(static_cast<int64_t>(classes.size()), o.void_label);
    if (o.progress) std::fprintf(stderr, "checking %zu training images\n", train_samples.size());
    const DatasetStatistics stats = compute_statistics(train_samples, spec, o.size);
    for (const auto& s : val_samples) read_sample(s, spec);  // fail now, not after the first epoch
    info = {o.model, classes, spec.void_labels, o.size, stats.norm, class_weights(o, stats, spec.num_classes)};
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
  const auto weights = torch::tensor(info.class_weights).to(o.device);

  std::vector<EpochRecord> records;
  for (int64_t epoch = state.epoch + 1; epoch <= o.epochs; ++epoch) {
    const auto epoch_start = std::chrono::steady_clock::now();
    torch::manual_seed(o.seed * 1000003 + epoch);  // randomness depends on (seed, epoch) alone: resumable
    model->train();
    auto batches = loader.epoch(o.seed * 1000003 + epoch);
    Progress progress("epoch " + std::to_string(epoch) + "/" + std::to_string(o.epochs) + " batch",
                      loader.batches_per_epoch(), o.progress);
    double loss_sum = 0;
    int64_t images = 0, step = 0;
    Batch batch;
    while (batches.next(batch)) {
      const double l = train_step(model, *optimizer, batch, weights, o.precision, o.device);
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
    if (!val_samples.empty()) {
      Segmenter validator(info, model, o.device, o.precision);
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
    save_checkpoint(last, info, model, optimizer.get(), state);
    if (improved) save_checkpoint(best, info, model, nullptr, state);
    records.push_back(r);
  }
  return records;
}

}  // namespace segnet

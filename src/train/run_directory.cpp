#include "train/run_directory.h"
#include "train/config.h"

#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/report.h>

#include <fstream>
#include <iomanip>
#include <sstream>

namespace segnet {

namespace {

constexpr const char* kCsvHeader =
    "epoch,train_loss,val_global_acc,val_class_avg_acc,val_miou,seconds,images_per_s,data_wait_fraction,"
    "pseudo_confident_fraction,allreduce_wait_fraction";

std::string format_row(const EpochRecord& r) {
  std::ostringstream s;
  s << r.epoch << ',' << std::setprecision(6) << r.train_loss << ',' << r.global_acc << ',' << r.class_avg_acc << ','
    << r.miou << ',' << std::setprecision(4) << r.seconds << ',' << r.images_per_s << ',' << r.data_wait_fraction << ','
    << r.pseudo_confident_fraction << ',' << r.allreduce_wait_fraction;
  return s.str();
}

// Keeps the rows of epochs up to `epoch` (a run stopped after writing a row but before its checkpoint
// repeats that epoch on resume).
void truncate_metrics(const std::filesystem::path& csv, int64_t epoch) {
  std::ifstream in(csv);
  std::string line, kept = std::string(kCsvHeader) + "\n";
  for (std::getline(in, line); std::getline(in, line);)
    if (!line.empty() && std::stoll(line.substr(0, line.find(','))) <= epoch) kept += line + "\n";
  write_text(csv, kept);
}

}  // namespace

RunDirectory::RunDirectory(std::filesystem::path folder) : folder_(std::move(folder)) {}

void RunDirectory::refuse_existing_run() const {
  if (std::filesystem::exists(last()))
    throw Error(last(), "already holds a run; resume it or choose another run folder");
}

void RunDirectory::create(const nlohmann::json& config) const {
  refuse_existing_run();
  ensure_output_folder(folder_);
  write_text(this->config(), config.dump(2) + "\n");
}

CheckpointReader RunDirectory::resume(const TrainOptions& o) const {
  const auto run_options = read_run_options(config());
  if (run_options) check_same_options(config(), *run_options, o), check_same_processes(config(), o.distributed.world_size);
  CheckpointReader ck(last());
  const ModelInfo& info = ck.info();
  if (info.model != o.model || info.task != o.task || info.upsampling != o.upsampling || info.dilation != o.dilation)
    throw Error(last(), "is a run of another model ('" + to_string(info.model) + "', task " + to_string(info.task) +
                            ", decoder " + to_string(info.upsampling) + ")");
  if (ck.state().optimizer != o.optimizer)
    throw Error(last(), "was trained with " + (ck.state().optimizer ? to_string(*ck.state().optimizer) : "no optimizer") +
                            ", not " + to_string(o.optimizer));
  if (ck.has_teacher() != !o.pseudo.unlabeled.empty())
    throw Error(last(), ck.has_teacher() ? "is a pseudo-label run: resume it with its unlabelled images"
                                         : "holds no pseudo-label teacher: the run was not started with unlabelled images");
  if (ck.has_trained() != (o.model_ema_decay > 0))
    throw Error(last(), ck.has_trained() ? "averages its weights: resume it with its model_ema_decay"
                                         : "holds no weight average: the run was started without model_ema_decay");
  return ck;
}

void RunDirectory::rewind(int64_t epoch, int64_t epochs, int64_t patience) const {
  truncate_metrics(metrics(), epoch);
  const auto run_options = read_run_options(config());
  if (run_options && (run_options->value("epochs", epochs) != epochs || run_options->value("patience", int64_t(0)) != patience))
    record_run_length(config(), epochs, patience);
}

void RunDirectory::record(const EpochRecord& r, const ModelInfo& info, const TrainState& state, SegNet& model,
                          const torch::optim::Optimizer& optimizer, SegNet* teacher, SegNet* trained) const {
  const bool fresh = !std::filesystem::exists(metrics());
  std::ofstream out(metrics(), std::ios::app);
  if (fresh) out << kCsvHeader << '\n';
  out << format_row(r) << '\n';
  if (!out.flush()) throw Error(metrics(), "cannot append");
  save_checkpoint(last(), info, model, &optimizer, state, teacher, trained);
  if (r.best) save_checkpoint(best(), info, model, nullptr, state);
  // curves.png from the whole file, so that a resumed run's earlier epochs are in it.
  draw_training_curves(read_metrics_csv(metrics()), curves_path(folder_));
}

}  // namespace segnet

// segnet train: a model from a labelled dataset, with a progress line per step and a summary per epoch.
#include "cli.h"
#include "progress.h"
#include "training_flags.h"

#include <segnet/error.h>
#include <segnet/metrics.h>
#include <segnet/train.h>

#include <algorithm>
#include <cstdio>
#include <iomanip>
#include <memory>
#include <sstream>

namespace segnet::cli {

namespace {


DistributedOptions distributed_options(const TrainArgs& a) {
  DistributedOptions d = distributed_from_environment();
  if (a.world_size) d.world_size = *a.world_size;
  if (a.rank) d.rank = *a.rank;
  if (!a.master.empty()) {
    const auto colon = a.master.rfind(':');
    const std::string port = colon == std::string::npos ? "" : a.master.substr(colon + 1);
    if (colon == 0 || port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
      throw Error("--master: '" + a.master + "' is not HOST:PORT");
    d.master_addr = a.master.substr(0, colon);
    d.master_port = std::stoll(port);
  }
  d.timeout_seconds = a.timeout_seconds;
  d.bucket_megabytes = a.bucket_megabytes;
  d.overlap = !a.no_overlap;
  return d;
}

Rgb parse_color(const std::string& text) {
  int r = -1, g = -1, b = -1;
  char extra = 0;
  if (std::sscanf(text.c_str(), "%d,%d,%d%c", &r, &g, &b, &extra) != 3 || std::min({r, g, b}) < 0 || std::max({r, g, b}) > 255)
    throw OptionError("void_colors", "'" + text + "' is not R,G,B with each in 0..255");
  return {uint8_t(r), uint8_t(g), uint8_t(b)};
}

// Options not given on the command line are taken from the options in `file` (a run's config.json,
// or --config); a bad one is an Error naming the file and the option's key.
void fill_from_saved(const CLI::App* cmd, TrainOptions& o, const std::filesystem::path& file) {
  const auto saved = read_run_options(file);
  if (!saved) throw Error(file, "does not exist");
  nlohmann::json merged = *saved;
  const auto flag_given = [cmd](const std::string& name) {
    const CLI::Option* flag = cmd->get_option_no_throw(name);
    return flag && flag->count() > 0;
  };
  const nlohmann::json here = options_to_json(o);
  for (const auto& [key, value] : here.items())
    if (flag_given(flag_for(key)) || (key.rfind("augment.", 0) == 0 && flag_given("--augment"))) merged[key] = value;
  try {
    o = options_from_json(merged, o);
  } catch (const OptionError& e) {
    throw Error(file, e.what());
  }
}

}  // namespace

TrainCallbacks progress_callbacks() {
  // The epoch count comes from the run's own reports: a tune trial runs fewer epochs than its base options.
  struct Shown {
    std::unique_ptr<Progress> bar;
    int64_t epochs = 0;
  };
  auto shown = std::make_shared<Shown>();
  TrainCallbacks callbacks;
  callbacks.checking_data = [](size_t images, bool validation) {
    std::fprintf(stderr, "checking %zu images\n", images);
    if (!validation) std::fprintf(stderr, "no validation list: best.pt will be the last epoch's model\n");
  };
  callbacks.step = [shown](const StepReport& s) {
    if (s.step == 1) {
      shown->epochs = s.epochs;
      shown->bar = std::make_unique<Progress>(
          "epoch " + std::to_string(s.epoch) + "/" + std::to_string(s.epochs) + " batch", s.steps, true);
    }
    std::ostringstream status;
    status << std::fixed << std::setprecision(4) << "loss " << s.mean_loss << std::setprecision(2) << "  "
           << s.images_per_s << " img/s";
    shown->bar->update(s.step, status.str());
  };
  callbacks.epoch = [shown](const EpochRecord& r) {
    std::ostringstream summary;
    summary << std::fixed << std::setprecision(4) << "epoch " << r.epoch << "/" << shown->epochs << "  loss " << r.train_loss
            << "  val G " << r.global_acc << "  C " << r.class_avg_acc << "  mIoU " << r.miou << std::setprecision(2)
            << "  " << r.images_per_s << " img/s  " << std::setprecision(1) << r.seconds << " s";
    if (shown->bar) shown->bar->finish(summary.str());
  };
  callbacks.stopped_early = [](const EarlyStop& s) {
    const long long stalled = s.epoch - s.best_epoch;
    std::fprintf(stderr, "stopping early after epoch %lld: val mIoU has not beaten %.4f (epoch %lld, best.pt) for %lld epoch%s (--patience)\n",
                 static_cast<long long>(s.epoch), s.best_miou, static_cast<long long>(s.best_epoch), stalled,
                 stalled == 1 ? "" : "s");
  };
  return callbacks;
}

void resolve_training_options(TrainArgs& a, const CLI::App* cmd) {
  TrainOptions& o = a.options;
  o.device = a.compute.setup();
  o.precision = a.compute.precision;
  o.size = parse_size("--size", a.size);
  if (!a.input_range.empty()) o.input_range = InputRange{a.input_range[0], a.input_range[1]};
  o.augment = augment_preset(a.augment);
  if (!a.scale_range.empty()) o.augment.min_scale = a.scale_range[0], o.augment.max_scale = a.scale_range[1];
  if (!a.color_jitter.empty())
    o.augment.brightness = a.color_jitter[0], o.augment.contrast = a.color_jitter[1],
    o.augment.saturation = a.color_jitter[2], o.augment.hue = a.color_jitter[3];
  if (a.no_flip) o.augment.flip = false;
  if (!a.pseudo_scale_range.empty()) o.pseudo.min_scale = a.pseudo_scale_range[0], o.pseudo.max_scale = a.pseudo_scale_range[1];
  if (const auto kind = choice_from_name<ClassWeights::Kind>(a.class_weights)) o.class_weights = {*kind, {}};
  else o.class_weights = ClassWeights::of(read_class_weights(a.class_weights));
  o.command_line = command_line();
  if (!a.config.empty()) fill_from_saved(cmd, o, a.config);
  if (o.pseudo.unlabeled.empty())
    for (const char* flag : {"--pseudo-weight", "--pseudo-threshold", "--pseudo-class-share", "--pseudo-scale-range",
                             "--pseudo-mix", "--pseudo-adapt-statistics", "--pseudo-rampup", "--ema-decay"})
      if (given(cmd, flag))
        throw Error(std::string(flag) + ": applies to pseudo-label training only, which --unlabeled starts");
}

namespace {

void run_train(TrainArgs& a, const CLI::App* cmd) {
  TrainOptions& o = a.options;
  if (o.resume && !a.config.empty()) throw Error("--config: a resumed run keeps the options of its own config.json");
  resolve_training_options(a, cmd);
  o.distributed = distributed_options(a);
  if (a.resume_if_exists && std::filesystem::exists(o.out / "last.pt")) o.resume = true;
  if (o.resume && !std::filesystem::exists(o.out / "last.pt"))
    throw Error(o.out / "last.pt", "does not exist: no run to resume in " + o.out.string());
  if (o.resume && std::filesystem::exists(o.out / "config.json")) fill_from_saved(cmd, o, o.out / "config.json");

  TrainCallbacks callbacks = o.distributed.rank == 0 ? progress_callbacks() : TrainCallbacks{};
  bool stopped_early = false;
  if (callbacks.stopped_early)
    callbacks.stopped_early = [&stopped_early, say = callbacks.stopped_early](const EarlyStop& s) {
      stopped_early = true;
      say(s);
    };
  const auto records = train(o, callbacks);
  if (o.distributed.rank != 0) return;  // rank 0 speaks for the run
  if (records.empty() && stopped_early) return;
  if (records.empty())
    std::printf("%s already trained to %lld epochs\n", o.out.c_str(), static_cast<long long>(o.epochs));
  else
    std::printf("trained %s to epoch %lld; last val mIoU %.4f; run in %s\n", to_string(o.model).c_str(),
                static_cast<long long>(records.back().epoch), records.back().miou, o.out.c_str());
}

}  // namespace

void add_training_flags(CLI::App* cmd, TrainArgs& a) {
  TrainOptions& t = a.options;
  cmd->add_option("--data", t.data, "dataset directory (list files, or images/ and masks/)");
  cmd->add_option("--config", a.config, "start from the options of a run's config.json (command-line options win)");
  cmd->add_option("--train-list", t.train_list, "training list, relative to --data")->capture_default_str();
  cmd->add_option("--val-list", t.val_list, "validation list (default: val.txt if the dataset has one)");
  add_choice(cmd, "--model", t.model, "network");
  add_choice(cmd, "--decoder", t.upsampling, "how the decoder upsamples");
  cmd->add_option("--dilation", t.dilation, "dilation of each encoder stage, e.g. 1,1,1,2,4")->delimiter(',');
  cmd->add_option("--encoder-weights", t.encoder_weights,
                  "FILE: torchvision's ImageNet vgg16_bn weights (.pth) for the encoder (segnet, bayesian-segnet); "
                  "inputs are then normalised as ImageNet's");
  cmd->add_option("--init", t.init,
                  "CHECKPOINT: fine-tune from its weights (same model and decoder; a new classifier if the class count "
                  "differs) and normalisation; optimizer and epochs start afresh");
  add_choice(cmd, "--task", t.task, "labels are class ids, or binary 0/255 (or 0/1) masks");
  add_choice(cmd, "--loss", t.loss,
             "default ce (multiclass), bce (binary); multiclass: ce, dice, focal, lovasz, ce+dice, ce+focal, ce+lovasz; "
             "binary: bce, dice, bce+dice");
  cmd->add_option("--size", a.size, "training size HxW")->capture_default_str();
  cmd->add_option("--input-range", a.input_range,
                  "LOW,HIGH: 16-bit images (PNG or TIFF): the stored values that become black and white (e.g. 0,4095 "
                  "for 12-bit data); kept in the checkpoints")
      ->delimiter(',')
      ->expected(2);
  add_choice(cmd, "--augment", a.augment,
             "training augmentation: none; flip; color (flip, jitter 0.25, hue 0.05; no rescaling); light (scale 0.75-1.5, jitter 0.1); standard (scale 0.5-2, jitter "
             "0.25, hue 0.05); strong (scale 0.5-2, jitter 0.4, hue 0.1)");
  cmd->add_option("--scale-range", a.scale_range, "MIN,MAX: random scale of the training size (overrides --augment's)")
      ->delimiter(',')
      ->expected(2);
  cmd->add_option("--color-jitter", a.color_jitter,
                  "B,C,S,H: brightness, contrast, saturation (0..1) and hue (0..0.5) jitter (overrides --augment's)")
      ->delimiter(',')
      ->expected(4);
  cmd->add_flag("--no-flip", a.no_flip, "no random horizontal flips (overrides --augment's)");
  cmd->add_option("--epochs", t.epochs, "passes over the training list")->capture_default_str();
  cmd->add_option("--patience", t.patience,
                  "N: stop once val mIoU has not beaten its best for N epochs (0: never); best.pt is the best")
      ->capture_default_str();
  cmd->add_option("--batch", t.batch, "images per micro-batch of each process (a step: batch x accumulate x processes)")
      ->capture_default_str();
  cmd->add_option("--accumulate", t.accumulate, "micro-batches whose gradients make one optimizer step")->capture_default_str();
  add_choice(cmd, "--optimizer", t.optimizer, "sgd has momentum 0.9");
  cmd->add_option("--lr", t.lr, "learning rate (default 0.01 sgd, 0.001 adam)");
  add_choice(cmd, "--lr-schedule", t.lr_schedule, "poly decays to 0 over --epochs");
  cmd->add_option("--weight-decay", t.weight_decay, "L2 penalty on the weights, through the optimizer")->capture_default_str();
  cmd->add_option("--model-ema-decay", t.model_ema_decay,
                  "validate and save an exponential moving average of the weights, with this decay per step "
                  "(e.g. 0.999); 0: the trained weights themselves")
      ->capture_default_str();
  cmd->add_option("--class-weights", a.class_weights, "median | none | FILE of weights")->capture_default_str();
  cmd->add_option("--num-classes", t.num_classes, "needed when the dataset has no classes.csv");
  cmd->add_option("--void-label", t.void_label, "label value to ignore (default: classes and 255; 0: classes stored from 1)");
  add_choice(cmd, "--label-format", t.label_format, "masks hold class ids (grey or palette), or classes.csv's colours");
  cmd->add_option("--label-map", t.label_map, "file of 'STORED CLASS' lines (CLASS an id or void): stored ids -> classes");
  cmd->add_option_function<std::vector<std::string>>(
         "--void-color", [&t](const std::vector<std::string>& colors) {
           for (const auto& c : colors) t.void_colors.push_back(parse_color(c));
         },
         "colour masks: a void colour R,G,B (repeatable; default 0,0,0 unless a class is black)")
      ->allow_extra_args(false);
  cmd->add_option("--unlabeled", t.pseudo.unlabeled, "folder or list of unlabelled images: pseudo-label training");
  cmd->add_option("--pseudo-weight", t.pseudo.weight, "lambda of the pseudo-label loss")->capture_default_str();
  cmd->add_option("--pseudo-threshold", t.pseudo.threshold, "tau: confidence a pseudo-label needs")->capture_default_str();
  cmd->add_option("--pseudo-class-share", t.pseudo.class_share,
                  "per class, the most confident share of the teacher's pixels of that class that are kept below tau "
                  "(class-balanced); 0: tau alone")
      ->capture_default_str();
  cmd->add_option("--pseudo-scale-range", a.pseudo_scale_range,
                  "MIN,MAX: random scale of the student's view of unlabelled images, pseudo-labels alongside")
      ->delimiter(',')
      ->expected(2);
  add_choice(cmd, "--pseudo-mix", t.pseudo.mix,
             "what the student's view of an unlabelled image mixes in: a box from another unlabelled image "
             "(cutmix), or half the classes of a labelled image with their labels (labeled-classmix), recoloured "
             "to the unlabelled image's colours (recolored-classmix)");
  cmd->add_flag("--pseudo-adapt-statistics", t.pseudo.adapt_statistics,
               "the student's views of unlabelled images also move batch norm's running statistics");
  cmd->add_option("--pseudo-rampup", t.pseudo.rampup_epochs, "epochs over which lambda ramps up")->capture_default_str();
  cmd->add_option("--ema-decay", t.pseudo.ema_decay, "teacher's exponential moving average")->capture_default_str();
  cmd->add_option("--seed", t.seed, "initial weights, shuffling, augmentation and dropout; the same seed, the same run")
      ->capture_default_str()
      ->check(kUnsigned);
  a.compute.add_to(cmd);
}

Command add_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  TrainOptions& t = a->options;
  auto* cmd = app.add_subcommand("train", "train a model on a labelled dataset");
  add_training_flags(cmd, *a);
  cmd->add_option("--out", t.out, "run directory")->required();
  cmd->add_flag("--resume", t.resume, "continue the run in --out from last.pt, with the options of its config.json");
  cmd->add_flag("--resume-if-exists", a->resume_if_exists, "--resume when --out holds last.pt, else start (for restarts)");
  cmd->add_option("--world-size", a->world_size, "processes of a distributed run (default: $WORLD_SIZE, else 1)");
  cmd->add_option("--rank", a->rank, "this process, 0..world-size-1 (default: $RANK); rank 0 writes --out");
  cmd->add_option("--master", a->master, "HOST:PORT of the rendezvous (default: $MASTER_ADDR:$MASTER_PORT, else 127.0.0.1:29500)");
  cmd->add_option("--dist-timeout", a->timeout_seconds, "seconds to wait for the other processes before failing")
      ->capture_default_str();
  cmd->add_option("--bucket-mb", a->bucket_megabytes, "size of the gradient all-reduce buckets")->capture_default_str();
  cmd->add_flag("--no-overlap", a->no_overlap, "all-reduce gradients after the backward pass instead of during it");
  return {cmd, [a, cmd] { run_train(*a, cmd); }};
}

}  // namespace segnet::cli

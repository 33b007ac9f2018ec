// segnet tune: a hyper-parameter search; prints each trial, the top five, and the best as a `train` command.
#include "cli.h"
#include "training_flags.h"

#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/tune.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

namespace segnet::cli {

namespace {

struct TuneArgs {
  TrainArgs train;
  TuneOptions tune;
  std::filesystem::path space;
};

std::string number(double v) {
  std::ostringstream s;
  s.precision(4);
  s << v;
  return s.str();
}

std::string settings(const TrialRecord& r) {
  const TrainOptions& o = r.options;
  return "--lr " + number(*o.lr) + " --weight-decay " + number(o.weight_decay) + " --batch " + std::to_string(o.batch) +
         " --augment " + to_string(r.augment) + " --class-weights " + to_string(o.class_weights.kind);
}

// `segnet train` with the tune command's own flags, less the search's, plus the best trial's settings.
std::string train_command(const TrialRecord& best, const std::filesystem::path& out) {
  // The searched settings' flags are refused by run_tune, so they are not among these.
  static const std::set<std::string> dropped = {"--out", "--trials", "--budget-minutes", "--min-epochs",
                                                "--eta", "--rungs",  "--space"};
  const auto& args = command_line();
  std::string command = "segnet train";
  for (size_t k = 2; k < args.size(); ++k) {  // after "segnet tune"
    const std::string flag = args[k].substr(0, args[k].find('='));
    if (dropped.count(flag)) {
      if (args[k].find('=') == std::string::npos) ++k;  // and its value
      continue;
    }
    command += " " + args[k];
  }
  return command + " " + settings(best) + " --epochs " + std::to_string(best.miou.size()) + " --out " +
         (out / "best_run").string();
}

void run_tune(TuneArgs& a, const CLI::App* cmd) {
  if (given(cmd, "--epochs"))
    throw Error("--epochs: tune sets each trial's epochs (--min-epochs, --eta, --rungs)");
  for (const char* searched : {"--lr", "--weight-decay", "--batch", "--augment", "--class-weights"})
    if (given(cmd, searched))
      throw Error(std::string(searched) + ": tune searches it (set its range with --space)");
  resolve_training_options(a.train, cmd);
  TuneOptions& t = a.tune;
  t.base = a.train.options;
  if (!a.space.empty()) {
    std::ifstream in = open_to_read(a.space, "search space");
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) throw Error(a.space, "is not valid JSON");
    try {
      t.space = search_space_from_json(j);
    } catch (const Error& e) {
      throw Error(a.space, e.what());
    }
  }
  TuneCallbacks callbacks;
  callbacks.trial_starts = [](const TrialRecord& r, int64_t epochs) {
    std::fprintf(stderr, "trial %lld, rung %lld, to %lld epochs: %s\n", static_cast<long long>(r.trial),
                 static_cast<long long>(r.rung), static_cast<long long>(epochs), settings(r).c_str());
  };
  callbacks.train = progress_callbacks();
  const TuneReport report = tune(t, callbacks);

  std::vector<const TrialRecord*> ranked;
  for (const auto& r : report.trials) ranked.push_back(&r);
  std::stable_sort(ranked.begin(), ranked.end(), [](const TrialRecord* a, const TrialRecord* b) {
    return a->rung != b->rung ? a->rung > b->rung : a->score() > b->score();
  });
  std::printf("%zu trials; the best five (by rung reached, then last val mIoU):\n", report.trials.size());
  std::printf("trial  rung  epochs  val mIoU  settings\n");
  for (size_t k = 0; k < std::min<size_t>(5, ranked.size()); ++k)
    std::printf("%5lld  %4lld  %6zu  %8.4f  %s\n", static_cast<long long>(ranked[k]->trial),
                static_cast<long long>(ranked[k]->rung), ranked[k]->miou.size(), ranked[k]->score(),
                settings(*ranked[k]).c_str());
  const std::string command = train_command(report.trials[report.best], t.out);
  write_text(t.out / "best_command.txt", command + "\n");
  std::printf("tune.csv, best.json and best_command.txt in %s; the best settings:\n%s\n", t.out.c_str(), command.c_str());
}

}  // namespace

Command add_tune(CLI::App& app) {
  auto a = std::make_shared<TuneArgs>();
  auto* cmd = app.add_subcommand(
      "tune", "search learning rate, weight decay, batch, augmentation and class weights by successive halving on val");
  add_training_flags(cmd, a->train);
  TuneOptions& t = a->tune;
  cmd->add_option("--out", t.out, "search folder: tune.json, tune.csv, best.json, best_command.txt, trial_NNN/")->required();
  cmd->add_option("--trials", t.trials, "first-rung trials (default: as many as --budget-minutes holds)");
  cmd->add_option("--budget-minutes", t.budget_minutes, "wall-clock budget; no trial starts past it");
  cmd->add_option("--min-epochs", t.min_epochs, "epochs of a first-rung trial")->capture_default_str();
  cmd->add_option("--eta", t.eta, "each rung keeps the best 1/eta, trained eta times longer")->capture_default_str();
  cmd->add_option("--rungs", t.rungs, "rungs of successive halving")->capture_default_str();
  cmd->add_option("--space", a->space,
                  "JSON overriding the ranges: {\"lr\": [min, max], \"weight_decay\": [min, max], \"batch\": [...], "
                  "\"augment\": [...], \"class_weights\": [\"median\", \"none\"]}");
  return {cmd, [a, cmd] { run_tune(*a, cmd); }};
}

}  // namespace segnet::cli

#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/report.h>
#include <segnet/tune.h>

#include "common/clock.h"
#include "common/format_number.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

namespace segnet {

namespace fs = std::filesystem;

namespace {

void check_range(const std::string& key, const std::array<double, 2>& range) {
  if (!(range[0] > 0 && range[1] >= range[0]))
    throw OptionError(key, "must be [min, max] with 0 < min <= max, not [" + std::to_string(range[0]) + ", " +
                               std::to_string(range[1]) + "]");
}

template <class T>
T pick(const std::vector<T>& values, std::mt19937_64& rng) {
  return values[rng() % values.size()];
}

double log_uniform(const std::array<double, 2>& range, std::mt19937_64& rng) {
  return std::exp(std::uniform_real_distribution<double>(std::log(range[0]), std::log(range[1]))(rng));
}

// Trial i's settings depend on the seed and i alone, so that a resumed search draws the same trials.
TrialRecord draw_trial(const TuneOptions& t, int64_t i) {
  std::seed_seq seq{static_cast<uint64_t>(t.base.seed), static_cast<uint64_t>(i), uint64_t(0x7475'6e65)};
  std::mt19937_64 rng(seq);
  TrialRecord r;
  r.trial = i;
  r.options = t.base;
  r.options.lr = log_uniform(t.space.lr, rng);
  r.options.weight_decay = log_uniform(t.space.weight_decay, rng);
  r.options.batch = pick(t.space.batch, rng);
  r.augment = pick(t.space.augment, rng);
  r.options.augment = augment_preset(r.augment);
  r.options.class_weights.kind = pick(t.space.class_weights, rng);
  char name[32];
  std::snprintf(name, sizeof name, "trial_%03lld", static_cast<long long>(i));
  r.options.out = t.out / name;
  return r;
}

// What must not change when a search is run again: everything but the trial count a budget decided.
nlohmann::json search_json(const TuneOptions& t) {
  nlohmann::json options = options_to_json(t.base);
  options.erase("epochs");
  return {{"options", options},
          {"space", search_space_to_json(t.space)},
          {"trials", t.trials},
          {"budget_minutes", t.budget_minutes},
          {"min_epochs", t.min_epochs},
          {"eta", t.eta},
          {"rungs", t.rungs}};
}

// tune.json: the search's options, and what it decided and spent so far.
struct SearchState {
  int64_t trials = 0;          // first-rung trials, once known
  double spent_seconds = 0;    // wall time of earlier invocations
};

SearchState read_or_start(const TuneOptions& t) {
  const fs::path file = t.out / "tune.json";
  const nlohmann::json now = search_json(t);
  if (!fs::exists(file)) return {t.trials, 0};
  std::ifstream in(file);
  const nlohmann::json saved = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (saved.is_discarded() || !saved.contains("search")) throw Error(file, "is not a tune.json segnet wrote");
  const nlohmann::json& before = saved.at("search");
  for (const auto& [key, value] : now.items()) {
    if (!before.contains(key)) throw Error(file, "has no '" + key + "': written by another segnet version?");
    if (key == "options") {
      for (const auto& [option, v] : value.items())
        if (before.at(key).value(option, nlohmann::json()) != v)
          throw OptionError(option, "is " + v.dump() + " here but " + before.at(key).value(option, nlohmann::json()).dump() +
                                        " in the search in " + file.string());
    } else if (before.at(key) != value) {
      throw OptionError(key, "is " + value.dump() + " here but " + before.at(key).dump() + " in the search in " + file.string());
    }
  }
  return {saved.value("decided_trials", t.trials), saved.value("spent_seconds", 0.0)};
}

void write_state(const TuneOptions& t, const SearchState& s) {
  write_text(t.out / "tune.json",
             nlohmann::json{{"search", search_json(t)}, {"decided_trials", s.trials}, {"spent_seconds", s.spent_seconds}}
                     .dump(2) +
                 "\n");
}

void write_table(const TuneOptions& t, const std::vector<TrialRecord>& trials) {
  std::ostringstream csv;
  csv << "trial,lr,weight_decay,batch,augment,class_weights,rung,epochs,last_miou,best_miou,miou_by_epoch\n";
  for (const TrialRecord& r : trials) {
    const double best = r.miou.empty() ? NAN : *std::max_element(r.miou.begin(), r.miou.end());
    csv << r.trial << "," << format_number(*r.options.lr) << "," << format_number(r.options.weight_decay) << "," << r.options.batch
        << "," << to_string(r.augment) << "," << to_string(r.options.class_weights.kind) << "," << r.rung << ","
        << r.miou.size() << "," << format_number(r.score()) << "," << format_number(best) << ",";
    for (size_t e = 0; e < r.miou.size(); ++e) csv << (e ? ";" : "") << format_number(r.miou[e]);
    csv << "\n";
  }
  write_text(t.out / "tune.csv", csv.str());
}

}  // namespace

SearchSpace search_space_from_json(const nlohmann::json& j, SearchSpace s) {
  if (!j.is_object()) throw Error("a search space must be a JSON object");
  for (const auto& [key, value] : j.items()) {
    try {
      if (key == "lr") s.lr = value.get<std::array<double, 2>>();
      else if (key == "weight_decay") s.weight_decay = value.get<std::array<double, 2>>();
      else if (key == "batch") {
        s.batch.clear();
        for (const nlohmann::json& b : value.get<std::vector<nlohmann::json>>()) {
          if (!b.is_number_integer()) throw OptionError("space.batch", b.dump() + " is not a batch size");
          s.batch.push_back(b.get<int64_t>());
        }
      }
      else if (key == "augment") {
        s.augment.clear();
        for (const std::string& name : value.get<std::vector<std::string>>()) {
          const auto preset = choice_from_name<AugmentPreset>(name);
          if (!preset) throw OptionError("space.augment", "'" + name + "' is not one of " + choice_list<AugmentPreset>());
          s.augment.push_back(*preset);
        }
      } else if (key == "class_weights") {
        s.class_weights.clear();
        for (const std::string& name : value.get<std::vector<std::string>>()) {
          const auto kind = choice_from_name<ClassWeights::Kind>(name);
          if (!kind) throw OptionError("space.class_weights", "'" + name + "' is not " + choice_list<ClassWeights::Kind>());
          s.class_weights.push_back(*kind);
        }
      } else {
        throw OptionError("space." + key, "is not searched (lr, weight_decay, batch, augment, class_weights)");
      }
    } catch (const nlohmann::json::exception&) {
      throw OptionError("space." + key, "has the wrong type (" + value.dump() + ")");
    }
  }
  return s;
}

nlohmann::json search_space_to_json(const SearchSpace& s) {
  std::vector<std::string> augment, weights;
  for (AugmentPreset p : s.augment) augment.push_back(to_string(p));
  for (ClassWeights::Kind k : s.class_weights) weights.push_back(to_string(k));
  return {{"lr", s.lr}, {"weight_decay", s.weight_decay}, {"batch", s.batch}, {"augment", augment}, {"class_weights", weights}};
}

void validate(const TuneOptions& t) {
  if (t.out.empty()) throw OptionError("out", "is needed: the search's folder");
  if (t.trials < 0) throw OptionError("trials", "must be at least 0");
  if (!(t.budget_minutes >= 0 && std::isfinite(t.budget_minutes)))
    throw OptionError("budget_minutes", "must be a number of minutes, at least 0");
  if (t.trials == 0 && t.budget_minutes == 0) throw OptionError("trials", "is needed without a budget of minutes");
  if (t.min_epochs < 1) throw OptionError("min_epochs", "must be at least 1");
  if (t.eta < 2) throw OptionError("eta", "must be at least 2");
  if (t.rungs < 1) throw OptionError("rungs", "must be at least 1");
  if (t.base.distributed.world_size != 1)
    throw OptionError("distributed.world_size", "must be 1: trials run one after another in this process");
  check_range("space.lr", t.space.lr);
  check_range("space.weight_decay", t.space.weight_decay);
  if (t.space.batch.empty() || t.space.augment.empty() || t.space.class_weights.empty())
    throw OptionError("space", "batch, augment and class_weights need at least one value each");
  for (int64_t b : t.space.batch)
    if (b < 1) throw OptionError("space.batch", std::to_string(b) + " is not a batch size");
  TrainOptions first = t.base;
  first.out = t.out / "trial_000";
  validate(first);
}

TuneReport tune(const TuneOptions& t, const TuneCallbacks& callbacks) {
  validate(t);
  if (!t.base.val_list && !fs::exists(t.base.data / "val.txt"))  // before a trial trains for nothing
    throw OptionError("val_list", "is needed: trials are ranked by their val mIoU, and " +
                                      (t.base.data / "val.txt").string() + " does not exist");
  const auto start = std::chrono::steady_clock::now();
  ensure_output_folder(t.out);
  SearchState state = read_or_start(t);
  write_state(t, state);
  const double budget = 60 * t.budget_minutes;
  const auto spent = [&] { return state.spent_seconds + seconds_since(start); };

  TuneReport report;
  const auto trial = [&](int64_t i) -> TrialRecord& {
    while (static_cast<int64_t>(report.trials.size()) <= i)
      report.trials.push_back(draw_trial(t, static_cast<int64_t>(report.trials.size())));
    return report.trials[i];
  };
  // Trains trial i to `epochs` (resuming its run), reads its mIoU per epoch, and saves the tables.
  const auto run = [&](int64_t i, int64_t rung, int64_t epochs) {
    TrialRecord& r = trial(i);
    r.rung = rung;
    if (callbacks.trial_starts) callbacks.trial_starts(r, epochs);
    TrainOptions o = r.options;
    o.epochs = epochs;
    o.resume = fs::exists(o.out / "last.pt");
    if (!o.resume && fs::exists(o.out)) {  // interrupted before its first epoch ended, or not ours
      if (!fs::is_directory(o.out) || !(fs::is_empty(o.out) || fs::exists(o.out / "config.json")))
        throw Error(o.out, "is in the search's folder but is not a trial's run folder; move it away");
      fs::remove_all(o.out);
    }
    // A search run again finds its trials trained as far as before (or further, by a later rung).
    if (!o.resume || read_metrics_csv(o.out / "metrics.csv").size() < static_cast<size_t>(epochs)) train(o, callbacks.train);
    auto rows = read_metrics_csv(o.out / "metrics.csv");
    rows.resize(std::min(rows.size(), static_cast<size_t>(epochs)));
    r.miou.clear();
    for (const auto& row : rows) r.miou.push_back(row.miou);
    if (r.miou.empty() || std::isnan(r.miou.back()))
      throw OptionError("val_list", "is needed: trials are ranked by their val mIoU");
    if (state.trials == 0) {  // a budget and no trial count: as many trials as its cost allows
      double seconds = 0;
      for (const auto& row : rows) seconds += row.seconds;
      const double per_trial = seconds / static_cast<double>(rows.size()) * static_cast<double>(t.min_epochs);
      if (per_trial > budget)
        throw OptionError("budget_minutes", format_number(t.budget_minutes) + " cannot hold one trial: its first " +
                                                std::to_string(t.min_epochs) + " epochs took " +
                                                format_number(per_trial / 60) + " minutes");
      // A first-rung trial costs min_epochs; each later rung continues 1/eta^k of them by
      // min_epochs x (eta^k - eta^(k-1)) epochs: (1 - 1/eta) of a first-rung trial per rung.
      const double per_first_rung_trial = per_trial * (1 + (t.rungs - 1) * (1 - 1.0 / static_cast<double>(t.eta)));
      state.trials = std::max<int64_t>(1, static_cast<int64_t>(budget / per_first_rung_trial));
    }
    write_table(t, report.trials);
    write_state(t, SearchState{state.trials, spent()});
  };
  const auto over_budget = [&] { return budget > 0 && spent() >= budget; };

  std::vector<int64_t> alive;
  int64_t epochs = t.min_epochs;
  for (int64_t i = 0; i == 0 || i < state.trials; ++i) {
    if (i > 0 && over_budget()) break;
    run(i, 0, epochs);
    alive.push_back(i);
  }
  for (int64_t rung = 1; rung < t.rungs && alive.size() > 1; ++rung) {
    std::stable_sort(alive.begin(), alive.end(), [&](int64_t a, int64_t b) { return trial(a).score() > trial(b).score(); });
    alive.resize((alive.size() + t.eta - 1) / t.eta);
    epochs *= t.eta;
    for (int64_t i : alive) {
      if (over_budget()) break;
      run(i, rung, epochs);
    }
  }
  // The best of the highest rung reached.
  for (size_t k = 1; k < report.trials.size(); ++k) {
    const TrialRecord &a = report.trials[k], &b = report.trials[report.best];
    if (a.rung > b.rung || (a.rung == b.rung && a.score() > b.score())) report.best = k;
  }
  TrainOptions best = report.trials[report.best].options;
  best.epochs = static_cast<int64_t>(report.trials[report.best].miou.size());
  write_text(t.out / "best.json", nlohmann::json{{"options", options_to_json(best)}}.dump(2) + "\n");
  write_state(t, SearchState{state.trials, spent()});
  return report;
}

}  // namespace segnet

// segnet tune: successive halving continues the best trials, a search resumes to the same result,
// and what cannot work is refused naming the option.
#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/report.h>
#include <segnet/tune.h>

#include "expect_error.h"
#include "run_cli.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>
#include <sstream>

using namespace segnet;
namespace fs = std::filesystem;
using segnet::test::contains;
using segnet::test::error_of;
using segnet::test::quote;
using segnet::test::segnet_cli;
using segnet::test::slurp;
using segnet::test::TempDir;

namespace {

TuneOptions tiny_search(const fs::path& data, const fs::path& out) {
  TuneOptions t;
  t.base.data = data;
  t.base.model = Model::SegNetBasic;
  t.base.size = {24, 32};
  t.base.seed = 3;
  t.out = out;
  t.space.batch = {2, 4};
  t.space.augment = {AugmentPreset::None, AugmentPreset::Flip};
  t.trials = 4;
  t.min_epochs = 2;
  t.eta = 2;
  t.rungs = 2;
  return t;
}

std::vector<std::vector<std::string>> csv_rows(const fs::path& file) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(slurp(file));
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> fields;
    std::istringstream l(line);
    for (std::string f; std::getline(l, f, ',');) fields.push_back(f);
    rows.push_back(fields);
  }
  return rows;
}

}  // namespace

TEST(Tune, SuccessiveHalvingContinuesTheBestHalfAndWritesItsTables) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 30, {24, 32}, 4});
  const TuneOptions t = tiny_search(dir.path / "data", dir.path / "search");
  const TuneReport report = tune(t);
  ASSERT_EQ(report.trials.size(), 4u);
  // Rung 0: every trial 2 epochs; rung 1: the two best at epoch 2 go on to 4 epochs.
  std::vector<std::pair<double, int64_t>> first_rung;
  for (const auto& r : report.trials) {
    ASSERT_GE(r.miou.size(), 2u);
    first_rung.push_back({r.miou[1], r.trial});
    EXPECT_EQ(read_metrics_csv(r.options.out / "metrics.csv").size(), r.miou.size()) << r.options.out;
  }
  std::stable_sort(first_rung.begin(), first_rung.end(), [](auto a, auto b) { return a.first > b.first; });
  for (size_t k = 0; k < 4; ++k) {
    const TrialRecord& r = report.trials[first_rung[k].second];
    EXPECT_EQ(r.miou.size(), k < 2 ? 4u : 2u) << "trial " << r.trial;
    EXPECT_EQ(r.rung, k < 2 ? 1 : 0) << "trial " << r.trial;
  }
  const TrialRecord& best = report.trials[report.best];
  EXPECT_EQ(best.rung, 1);
  for (const auto& r : report.trials)
    if (r.rung == 1) EXPECT_GE(best.score(), r.score());
  // Trials differ in what was drawn.
  std::set<double> rates;
  for (const auto& r : report.trials) rates.insert(*r.options.lr);
  EXPECT_EQ(rates.size(), 4u);

  const auto rows = csv_rows(t.out / "tune.csv");
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0][0], "trial");
  EXPECT_EQ(rows[0].back(), "miou_by_epoch");
  for (size_t k = 1; k < rows.size(); ++k) {
    const TrialRecord& r = report.trials[k - 1];
    EXPECT_EQ(rows[k][6], std::to_string(r.rung));
    EXPECT_EQ(rows[k][7], std::to_string(r.miou.size()));
    EXPECT_EQ(std::count(rows[k].back().begin(), rows[k].back().end(), ';'), static_cast<long>(r.miou.size()) - 1);
  }
  // best.json holds the best trial's options, with the epochs it reached, as train's --config reads them.
  const auto best_json = nlohmann::json::parse(slurp(t.out / "best.json"));
  const TrainOptions again = options_from_json(best_json.at("options"));
  EXPECT_EQ(again.epochs, 4);
  EXPECT_EQ(*again.lr, *best.options.lr);
  EXPECT_EQ(again.batch, best.options.batch);
  EXPECT_EQ(again.augment.flip, best.options.augment.flip);
}

// An interruption (here: an exception from a callback after a trial's first epoch) leaves a search
// that, run again, ends with the tables of a search never interrupted.
TEST(Tune, RunAgainAfterAnInterruptionEndsAsAnUninterruptedSearch) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 30, {24, 32}, 4});
  const TuneOptions whole = tiny_search(dir.path / "data", dir.path / "whole");
  tune(whole);
  TuneOptions cut = tiny_search(dir.path / "data", dir.path / "cut");
  TuneCallbacks interrupt;
  int epochs = 0;
  interrupt.train.epoch = [&](const EpochRecord&) {
    if (++epochs == 5) throw std::runtime_error("interrupted");  // trial 2's first epoch
  };
  EXPECT_THROW(tune(cut, interrupt), std::runtime_error);
  const std::string before = slurp(cut.out / "trial_000" / "metrics.csv");
  int epochs_after = 0;
  TuneCallbacks count;
  count.train.epoch = [&](const EpochRecord&) { ++epochs_after; };
  tune(cut, count);
  // Trial 2 went on from its first epoch: 1 + trial 3's 2 + the two best's 2 more each.
  EXPECT_EQ(epochs_after, 1 + 2 + 2 * 2);
  EXPECT_EQ(slurp(cut.out / "tune.csv"), slurp(whole.out / "tune.csv"));
  EXPECT_EQ(slurp(cut.out / "best.json"), slurp(whole.out / "best.json"));
  const auto rows_whole = csv_rows(whole.out / "tune.csv");
  EXPECT_EQ(rows_whole, csv_rows(cut.out / "tune.csv"));
  // A finished search run again trains nothing.
  epochs_after = 0;
  tune(cut, count);
  EXPECT_EQ(epochs_after, 0);
  EXPECT_TRUE(contains(slurp(cut.out / "trial_000" / "metrics.csv"), before));
  // Another search space in the same folder is refused, naming what differs.
  cut.space.batch = {8};
  const std::string message = error_of([&] { tune(cut); });
  EXPECT_TRUE(contains(message, "space is ")) << message;
  EXPECT_TRUE(contains(message, (cut.out / "tune.json").string())) << message;
}

TEST(Tune, ImpossibleSearchesAreRefusedNamingTheOption) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 12, {24, 32}, 4});
  TuneOptions t = tiny_search(dir.path / "data", dir.path / "search");
  t.trials = 0;
  EXPECT_TRUE(contains(error_of([&] { tune(t); }), "trials is needed without a budget of minutes"));
  // A budget that one trial's first rung exceeds: named once the first epoch's time is known.
  t.budget_minutes = 1e-5;
  const std::string budget = error_of([&] { tune(t); });
  EXPECT_TRUE(contains(budget, "budget_minutes") && contains(budget, "cannot hold one trial")) << budget;
  t = tiny_search(dir.path / "data", dir.path / "search2");
  t.eta = 1;
  EXPECT_TRUE(contains(error_of([&] { tune(t); }), "eta must be at least 2"));
  t = tiny_search(dir.path / "data", dir.path / "search3");
  t.space.lr = {0.1, 0.01};
  EXPECT_TRUE(contains(error_of([&] { tune(t); }), "space.lr"));
  EXPECT_TRUE(contains(error_of([] { search_space_from_json(nlohmann::json{{"momentum", {0.8, 0.9}}}); }), "space.momentum"));
  EXPECT_TRUE(contains(error_of([] { search_space_from_json(nlohmann::json{{"augment", {"wild"}}}); }), "'wild'"));
  t = tiny_search(dir.path / "data", dir.path / "search4");
  t.base.val_list = "missing.txt";
  EXPECT_TRUE(contains(error_of([&] { tune(t); }), "missing.txt"));
  // A batch size that is not a whole number, or not a list.
  const std::string fraction = error_of([] { search_space_from_json(nlohmann::json{{"batch", {2.5}}}); });
  EXPECT_TRUE(contains(fraction, "space.batch") && contains(fraction, "2.5")) << fraction;
  EXPECT_TRUE(contains(error_of([] { search_space_from_json(nlohmann::json{{"batch", 4}}); }), "space.batch has the wrong type"));
  // A file of the user's where a trial's run folder goes: named, and left as it was.
  t = tiny_search(dir.path / "data", dir.path / "search6");
  fs::create_directories(t.out);
  std::ofstream(t.out / "trial_000") << "notes";
  EXPECT_TRUE(contains(error_of([&] { tune(t); }), "trial_000"));
  EXPECT_EQ(fs::file_size(t.out / "trial_000"), 5u);
  // No val list to rank the trials by: refused before the first trial trains.
  fs::remove(dir.path / "data" / "val.txt");
  t = tiny_search(dir.path / "data", dir.path / "search5");
  const std::string no_val = error_of([&] { tune(t); });
  EXPECT_TRUE(contains(no_val, "val_list is needed") && contains(no_val, "val.txt")) << no_val;
  EXPECT_FALSE(fs::exists(dir.path / "search5" / "trial_000"));
}

// The command line `segnet tune` prints is ready to run: `segnet train` accepts it as it is; its
// progress counts each trial's own epochs.
TEST(Tune, TheBestCommandLineTrains) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 16, {24, 32}, 4});
  const auto t = segnet_cli("tune --data " + quote(dir.path / "data") +
                                " --model segnet-basic --size 24x32 --seed 2 --threads 1 --trials 2 --min-epochs 1 --rungs 1 --out " +
                                quote(dir.path / "search"),
                            dir.path);
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_TRUE(contains(t.out, "the best five")) << t.out;
  // Each epoch's summary counts to the trial's epochs, not to train's default of 100.
  EXPECT_TRUE(contains(t.err, "epoch 1/1  loss")) << t.err;
  EXPECT_FALSE(contains(t.err, "epoch 1/100")) << t.err;
  std::string command = slurp(dir.path / "search" / "best_command.txt");
  ASSERT_EQ(command.rfind("segnet train ", 0), 0u) << command;
  EXPECT_TRUE(contains(command, "--lr ") && contains(command, "--augment ") && contains(command, "--epochs 1")) << command;
  EXPECT_FALSE(contains(command, "--trials")) << command;
  command.pop_back();  // the newline
  const auto trained = segnet_cli(command.substr(std::string("segnet ").size()), dir.path);
  EXPECT_EQ(trained.status, 0) << command << "\n" << trained.err;
  EXPECT_TRUE(fs::exists(dir.path / "search" / "best_run" / "last.pt"));
  const auto no_epochs = segnet_cli("tune --data " + quote(dir.path / "data") + " --epochs 3 --trials 2 --out " +
                                        quote(dir.path / "other"),
                                    dir.path);
  EXPECT_NE(no_epochs.status, 0);
  EXPECT_TRUE(contains(no_epochs.err, "--epochs: tune sets each trial's epochs")) << no_epochs.err;
  const auto no_lr = segnet_cli("tune --data " + quote(dir.path / "data") + " --lr 0.1 --trials 2 --out " + quote(dir.path / "other"),
                                dir.path);
  EXPECT_NE(no_lr.status, 0);
  EXPECT_TRUE(contains(no_lr.err, "--lr: tune searches it")) << no_lr.err;
  EXPECT_FALSE(fs::exists(dir.path / "other"));
}

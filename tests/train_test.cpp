#include <segnet/checkpoint.h>
#include <segnet/files.h>
#include <segnet/image.h>
#include <segnet/error.h>
#include <segnet/predict.h>
#include <segnet/segmenter.h>
#include <segnet/train.h>

#include "train/augment.h"
#include "train/losses.h"
#include "train/schedule.h"
#include "train/step.h"
#include "expect_error.h"
#include "image_files.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <unistd.h>

using namespace segnet;
namespace fs = std::filesystem;
using segnet::test::contains;
using segnet::test::error_of;
using segnet::test::TempDir;
using segnet::test::write_palette_png;

namespace {

TrainOptions tiny_run(const fs::path& data, const fs::path& out) {
  TrainOptions o;
  o.data = data;
  o.model = Model::SegNetBasic;
  o.size = {24, 32};
  o.batch = 4;
  o.epochs = 2;
  o.out = out;
  o.seed = 11;
  return o;
}

void expect_same_weights(const fs::path& a, const fs::path& b) {
  const auto ma = load_checkpoint(a).model, mb = load_checkpoint(b).model;
  const auto pa = ma->named_parameters(), pb = mb->named_parameters();
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
  const auto ba = ma->named_buffers(), bb = mb->named_buffers();
  for (const auto& p : ba) EXPECT_TRUE(torch::equal(p.value(), bb[p.key()])) << p.key();
}

int count_lines(const fs::path& file) {
  std::ifstream in(file);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

}  // namespace

TEST(Train, ShortTrainingLowersLossAndBeatsChance) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 60, {32, 40}, 2});
  auto o = tiny_run(dir.path / "data", dir.path / "run");
  o.size = {32, 40};
  o.epochs = 8;
  o.optimizer = Optimizer::Adam;
  o.augment = augment_preset(AugmentPreset::Flip);  // rescaled 32x40 shapes take more than 8 epochs
  const auto records = train(o);
  ASSERT_EQ(records.size(), 8u);
  EXPECT_LT(records.back().train_loss, 0.7 * records.front().train_loss);
  // Predicting the commonest class everywhere scores at most 1/5 mIoU on 5 classes.
  EXPECT_GT(records.back().miou, 0.35) << "loss " << records.back().train_loss;
  std::printf("final val mIoU %.3f\n", records.back().miou);
  EXPECT_EQ(count_lines(dir.path / "run" / "metrics.csv"), 9);
  EXPECT_TRUE(fs::exists(dir.path / "run" / "best.pt"));
}

// An interrupted run resumed from last.pt ends with exactly the weights of an uninterrupted one, with
// either optimizer, and with a weight average (whose last.pt also keeps the trained weights).
// A first call with fewer --epochs stands in for the interruption; the constant schedule makes the
// two calls' learning rates those of one run (poly is a function of --epochs).
TEST(Train, ResumeEndsWithTheWeightsOfAnUninterruptedRun) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 15, {24, 32}, 3});
  const std::vector<std::pair<Optimizer, double>> cases = {{Optimizer::Sgd, 0}, {Optimizer::Adam, 0}, {Optimizer::Sgd, 0.9}};
  for (const auto& [optimizer, ema] : cases) {
    const std::string name = to_string(optimizer) + (ema > 0 ? "_ema" : "");
    auto whole = tiny_run(dir.path / "data", dir.path / ("whole_" + name));
    whole.optimizer = optimizer;
    whole.model_ema_decay = ema;
    whole.lr_schedule = LrSchedule::Constant;
    train(whole);

    auto first = tiny_run(dir.path / "data", dir.path / ("parts_" + name));
    first.optimizer = optimizer;
    first.model_ema_decay = ema;
    first.lr_schedule = LrSchedule::Constant;
    first.epochs = 1;
    train(first);
    auto rest = first;
    rest.epochs = 2;
    rest.resume = true;
    ASSERT_EQ(train(rest).size(), 1u);

    expect_same_weights(whole.out / "last.pt", rest.out / "last.pt");
    EXPECT_EQ(count_lines(rest.out / "metrics.csv"), 3) << name;
    EXPECT_EQ(CheckpointReader(rest.out / "last.pt").has_trained(), ema > 0) << name;
  }
}

// With model_ema_decay, last.pt's model is the moving average of the weights training optimizes
// (kept beside it), updated after each step with decay min(d, (1 + step) / (10 + step)), batch-norm
// running statistics alike (the batch count is copied). One step per epoch, the run resumed epoch by
// epoch: each last.pt gives the average before and the trained weights after a step.
TEST(Train, ModelEmaSavesTheMovingAverageOfTheTrainedWeights) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 5, {24, 32}, 4});  // 4 training images: one step of 4
  auto o = tiny_run(dir.path / "data", dir.path / "run");
  o.model_ema_decay = 0.2;  // below (1 + step) / (10 + step) from step 2 on: both branches of the min
  o.lr_schedule = LrSchedule::Constant;
  o.epochs = 1;
  train(o);
  o.resume = true;
  for (const int64_t step : {1, 2}) {
    CheckpointReader before(o.out / "last.pt");
    SegNet average = before.model();
    o.epochs = step + 1;
    ASSERT_EQ(train(o).size(), 1u);
    CheckpointReader after(o.out / "last.pt");
    SegNet now = after.model(), trained = after.model();
    after.load_trained(trained);
    const double d = step == 1 ? 2.0 / 11.0 : 0.2;
    const auto averages = now->named_parameters(), previous = average->named_parameters();
    bool trained_differs = false;  // or the check above proves nothing
    for (const auto& p : trained->named_parameters()) {
      const auto expected = d * previous[p.key()] + (1 - d) * p.value();
      EXPECT_TRUE(torch::allclose(averages[p.key()], expected, 1e-6, 1e-7)) << "step " << step << " " << p.key();
      trained_differs = trained_differs || !torch::equal(p.value(), previous[p.key()]);
    }
    EXPECT_TRUE(trained_differs) << "step " << step;
    const auto buffers = now->named_buffers(), previous_buffers = average->named_buffers();
    for (const auto& b : trained->named_buffers()) {
      if (!b.value().is_floating_point()) {
        EXPECT_TRUE(torch::equal(buffers[b.key()], b.value())) << b.key();
        continue;
      }
      const auto expected = d * previous_buffers[b.key()] + (1 - d) * b.value();
      EXPECT_TRUE(torch::allclose(buffers[b.key()], expected, 1e-6, 1e-7)) << "step " << step << " " << b.key();
      EXPECT_FALSE(torch::equal(b.value(), previous_buffers[b.key()])) << "step " << step << " " << b.key();
    }
  }
  auto resumed_without = o;
  resumed_without.model_ema_decay = 0;
  resumed_without.epochs = 4;
  EXPECT_TRUE(contains(error_of([&] { train(resumed_without); }), "model_ema_decay")) << "a changed option is refused";
}

TEST(Train, ModelEmaDecayAtWarmsUpThenHoldsTheDecay) {
  EXPECT_DOUBLE_EQ(model_ema_decay_at(0.999, 0), 0.1);
  EXPECT_DOUBLE_EQ(model_ema_decay_at(0.999, 90), 0.91);
  EXPECT_DOUBLE_EQ(model_ema_decay_at(0.999, 100000), 0.999);
  EXPECT_DOUBLE_EQ(model_ema_decay_at(0.5, 3), 4.0 / 13.0);
  EXPECT_DOUBLE_EQ(model_ema_decay_at(0.5, 10), 0.5);
}

// The library reports through its callbacks and writes nothing to the terminal itself.
TEST(Train, ReportsThroughCallbacksAndPrintsNothing) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 10, {24, 32}, 7});
  const auto o = tiny_run(dir.path / "data", dir.path / "run");  // 8 training images, batch 4, 2 epochs
  size_t checked = 0;
  std::vector<StepReport> steps;
  std::vector<EpochRecord> epochs;
  TrainCallbacks callbacks;
  bool validation = false;
  callbacks.checking_data = [&](size_t images, bool has_validation) { checked = images, validation = has_validation; };
  callbacks.step = [&](const StepReport& s) { steps.push_back(s); };
  callbacks.epoch = [&](const EpochRecord& r) { epochs.push_back(r); };
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const auto records = train(o, callbacks);
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(checked, 10u);
  EXPECT_TRUE(validation);
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(steps[1].step, 2);
  EXPECT_EQ(steps[1].steps, 2);
  EXPECT_EQ(steps[3].epoch, 2);
  EXPECT_GT(steps[3].mean_loss, 0);
  ASSERT_EQ(epochs.size(), 2u);
  EXPECT_EQ(epochs[1].epoch, records[1].epoch);
  EXPECT_EQ(epochs[1].train_loss, records[1].train_loss);
}

TEST(Train, ValidateNamesTheOptionThatIsWrong) {
  TrainOptions o;
  o.data = "data";
  o.out = "run";
  auto option_of = [](const TrainOptions& options) -> std::string {
    try {
      validate(options);
    } catch (const OptionError& e) {
      return e.option();
    }
    return "";
  };
  EXPECT_EQ(option_of(o), "");
  auto bad = o;
  bad.epochs = 0;
  EXPECT_EQ(option_of(bad), "epochs");
  bad = o;
  bad.lr = INFINITY;
  EXPECT_EQ(option_of(bad), "lr");
  bad = o;
  bad.pseudo.ema_decay = 1.0;
  EXPECT_EQ(option_of(bad), "pseudo.ema_decay");
  bad = o;
  bad.model_ema_decay = -0.5;
  EXPECT_EQ(option_of(bad), "model_ema_decay");
  bad = o;
  bad.loss = Loss::BinaryCrossEntropy;  // a binary-only loss for a multi-class task
  EXPECT_EQ(option_of(bad), "loss");
  bad = o;
  bad.model = Model::SegNetBasic;
  bad.dilation = {1, 2, 4, 8, 16};
  EXPECT_EQ(option_of(bad), "dilation");
  bad = o;
  bad.void_label = 3;
  bad.num_classes = 11;
  EXPECT_EQ(option_of(bad), "void_label");
  bad = o;
  bad.label_format = LabelFormat::Color;  // colour masks have void_colors, not a void id
  bad.void_label = 0;
  EXPECT_EQ(option_of(bad), "void_label");
  for (const float weight : {-1.f, std::nanf(""), INFINITY}) {
    bad = o;
    bad.class_weights = ClassWeights::of({1.f, weight});
    EXPECT_EQ(option_of(bad), "class_weights") << weight;
  }
}

// The smallest training size leaves the deepest stage two pixels, which batch norm can normalise
// even in a batch of one image; one pixel less is refused before any work.
TEST(Train, TrainingSizeMustLeaveTheDeepestStageMoreThanOnePixel) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 5, {24, 32}, 3});
  auto o = tiny_run(dir.path / "data", dir.path / "run");
  o.epochs = 1;
  o.batch = 1;
  o.size = {8, 8};  // segnet-basic: 4 stages, the deepest at 1/8 of the input
  EXPECT_TRUE(contains(error_of([&] { train(o); }), "one side must exceed 8"));
  EXPECT_FALSE(fs::exists(o.out));
  o.size = {9, 8};
  EXPECT_EQ(train(o).size(), 1u);
  o.model = Model::SegNet;  // 5 stages
  o.size = {16, 16};
  EXPECT_TRUE(contains(error_of([&] { validate(o); }), "one side must exceed 16"));
}

// A configuration value of the wrong JSON type is an OptionError naming its key, choices and class
// weights included, not a JSON library exception.
TEST(Train, ConfigValuesOfTheWrongTypeNameTheirKey) {
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"model", 3},
           {"optimizer", nlohmann::json::array()},
           {"class_weights", {"a", "b"}},
           {"class_weights", "mean"},
           {"epochs", "ten"},
           {"batch", 2.5},  // not truncated to 2
           {"seed", -5}}) {  // not wrapped around
    try {
      options_from_json({{key, value}});
      ADD_FAILURE() << key << " = " << value.dump() << " was accepted";
    } catch (const OptionError& e) {
      EXPECT_EQ(e.option(), key);
    }
  }
}

// Class weights in config.json: by name where they have one, else as the list of weights.
TEST(Train, ClassWeightsAreWrittenByNameOrAsTheirList) {
  for (const auto& [weights, written] : std::vector<std::pair<ClassWeights, nlohmann::json>>{
           {ClassWeights::median_frequency(), "median"},
           {ClassWeights::uniform(), "none"},
           {ClassWeights::of({0.5f, 2.f}), {0.5, 2.0}}}) {
    TrainOptions o;
    o.class_weights = weights;
    const nlohmann::json j = options_to_json(o);
    EXPECT_EQ(j.at("class_weights"), written);
    const TrainOptions back = options_from_json(j);
    EXPECT_EQ(back.class_weights.kind, weights.kind) << written;
    EXPECT_EQ(back.class_weights.given, weights.given) << written;
  }
}

TEST(Train, RefusesToOverwriteAnExistingRun) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 5, {24, 32}, 4});
  auto o = tiny_run(dir.path / "data", dir.path / "run");
  o.epochs = 1;
  train(o);
  const auto before = fs::last_write_time(o.out / "last.pt");
  EXPECT_THROW(train(o), Error);
  EXPECT_EQ(fs::last_write_time(o.out / "last.pt"), before);
}

// A validation list that is named must exist (no silent run without validation), and a failed start
// leaves no run folder behind.
TEST(Train, ANamedValidationListMustExist) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 5, {24, 32}, 4});
  auto o = tiny_run(dir.path / "data", dir.path / "run");
  o.val_list = "vall.txt";
  try {
    train(o);
    ADD_FAILURE() << "trained without its validation list";
  } catch (const OptionError& e) {
    EXPECT_EQ(e.option(), "val_list");
    EXPECT_NE(std::string(e.what()).find("vall.txt"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(o.out));
}

// 0/255 masks read as class ids: 255 is void and the model would learn one class.
TEST(Train, BinaryMasksUnderTheMulticlassTaskAreAnErrorThatSaysBinary) {
  TempDir dir;
  SynthOptions data{dir.path / "data", 5, {24, 32}, 4};
  data.binary = true;
  synthesize_dataset(data);
  auto o = tiny_run(dir.path / "data", dir.path / "run");
  try {
    train(o);
    ADD_FAILURE() << "trained 0/255 masks as classes";
  } catch (const OptionError& e) {
    EXPECT_EQ(e.option(), "task");
    EXPECT_NE(e.problem().find("binary"), std::string::npos) << e.problem();
  }
  EXPECT_FALSE(fs::exists(o.out));
  o.task = Task::Binary;
  EXPECT_EQ(train(o).size(), 2u);
}

// config.json holds every option, so that from_json(to_json(o)) is o, and a resume with a different
// option is refused, naming it and both values.
TEST(Train, ConfigRecordsEveryOptionAndResumeRefusesAConflictingOne) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 5, {24, 32}, 4});
  auto o = tiny_run(dir.path / "data", dir.path / "run");
  o.epochs = 1;
  o.lr = 0.02;
  o.pseudo.threshold = 0.8;
  o.pseudo.class_share = 0.25;
  o.pseudo.min_scale = 0.75;
  o.pseudo.max_scale = 1.5;
  o.command_line = {"segnet", "train"};
  train(o);
  const auto saved = read_run_options(o.out / "config.json");
  ASSERT_TRUE(saved.has_value());
  EXPECT_EQ(options_to_json(options_from_json(*saved)), *saved);
  EXPECT_EQ(saved->at("lr"), 0.02);
  EXPECT_EQ(saved->at("pseudo.threshold"), 0.8);
  EXPECT_EQ(saved->at("pseudo.class_share"), 0.25);
  EXPECT_EQ(saved->at("pseudo.max_scale"), 1.5);
  std::ifstream in(o.out / "config.json");
  const auto config = nlohmann::json::parse(in);
  EXPECT_EQ(config.at("command_line"), nlohmann::json({"segnet", "train"}));
  EXPECT_EQ(config.at("dataset").at("classes").size(), 5u);
  EXPECT_FALSE(config.at("segnet").at("commit").get<std::string>().empty());
  auto resumed = o;
  resumed.resume = true;
  resumed.seed = 12;
  try {
    train(resumed);
    ADD_FAILURE() << "resumed with another seed";
  } catch (const OptionError& e) {
    EXPECT_EQ(e.option(), "seed");
    EXPECT_NE(e.problem().find("12"), std::string::npos) << e.problem();
    EXPECT_NE(e.problem().find("11"), std::string::npos) << e.problem();
  }
  resumed.seed = o.seed;
  EXPECT_EQ(train(resumed).size(), 0u);  // same options: complete already
  EXPECT_THROW(options_from_json({{"lr", 0.1}, {"learning_rate", 0.1}}), OptionError);
}

// The label formats users have, each through a one-epoch run: palette PNGs (indices), colour masks
// (classes.csv's colours, black void) and stored ids through a label map.
TEST(Train, TrainsOnPaletteColourAndMappedLabels) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 6, {24, 32}, 4});  // 5 classes, void 5 and 255
  const auto samples = find_samples(dir.path / "data", "train.txt");
  const auto classes = read_classes_csv(dir.path / "data" / "classes.csv");
  const auto val = find_samples(dir.path / "data", "val.txt");
  for (const std::string format : {"palette", "color", "map"}) {
    const fs::path data = dir.path / format;
    fs::create_directories(data);
    fs::copy(dir.path / "data" / "classes.csv", data / "classes.csv");
    std::ofstream list(data / "train.txt"), val_list(data / "val.txt");
    auto all = samples;
    all.insert(all.end(), val.begin(), val.end());
    for (size_t i = 0; i < all.size(); ++i) {
      const cv::Mat ids = read_label(all[i].label, make_label_spec(5, std::nullopt));  // 255 = void
      const fs::path label = data / (std::to_string(i) + ".png");
      if (format == "palette") {
        std::vector<Rgb> palette(256, Rgb{9, 9, 9});
        for (size_t k = 0; k < classes.size(); ++k) palette[k] = classes[k].rgb;
        write_palette_png(label, ids, palette);
      } else if (format == "color") {
        cv::Mat rgb = colorize(ids, classes);
        rgb.setTo(cv::Scalar(0, 0, 0), ids == 255);
        write_png(label, rgb);
      } else {  // class k stored as 10 * k + 3, void as 0
        cv::Mat stored = ids * 10 + 3;
        stored.setTo(0, ids == 255);
        write_png(label, stored);
      }
      (i < samples.size() ? list : val_list) << fs::absolute(all[i].image).string() << ' ' << label.filename().string() << '\n';
    }
    list.close(), val_list.close();
    std::ofstream(data / "map.txt") << "0 void\n3 0\n13 1\n23 2\n33 3\n43 4\n";
    auto o = tiny_run(data, dir.path / ("run_" + format));
    o.epochs = 1;
    if (format == "color") o.label_format = LabelFormat::Color;
    if (format == "map") o.label_map = data / "map.txt";
    ASSERT_EQ(train(o).size(), 1u) << format;
    // The checkpoint reads labels as its run did: eval of the same list scores the same pixels.
    const ModelInfo info = CheckpointReader(o.out / "last.pt").info();
    const cv::Mat first = read_label(data / "0.png", info.label_spec());
    EXPECT_EQ(cv::countNonZero(first != read_label(all[0].label, make_label_spec(5, std::nullopt))), 0) << format;
  }
}

TEST(LearningRateSchedule, PolyDecaysFromTheBaseRateToZeroAndConstantStays) {
  EXPECT_DOUBLE_EQ(scheduled_lr(LrSchedule::Poly, 0.01, 0, 100), 0.01);
  EXPECT_NEAR(scheduled_lr(LrSchedule::Poly, 0.01, 50, 100), 0.01 * std::pow(0.5, 0.9), 1e-12);
  EXPECT_DOUBLE_EQ(scheduled_lr(LrSchedule::Poly, 0.01, 100, 100), 0.0);
  EXPECT_GT(scheduled_lr(LrSchedule::Poly, 0.01, 98, 100), scheduled_lr(LrSchedule::Poly, 0.01, 99, 100));
  EXPECT_DOUBLE_EQ(scheduled_lr(LrSchedule::Constant, 0.01, 99, 100), 0.01);
}

TEST(ConfidentLabels, MarkExactlyThePixelsBelowTheThresholdAsVoid) {
  // 3 classes x 1 x 4 pixels; top probabilities 0.7, 0.5, 0.9, 0.69.
  const auto probs = torch::tensor({{{0.7, 0.25, 0.05, 0.31}}, {{0.2, 0.5, 0.9, 0.0}}, {{0.1, 0.25, 0.05, 0.69}}});
  const auto labels = confident_labels(probs, 0.7);
  EXPECT_TRUE(torch::equal(labels, torch::tensor({{0, int(kIgnoreLabel), 1, int(kIgnoreLabel)}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(confident_labels(probs.unsqueeze(0), 0.7), labels.unsqueeze(0)));  // batched
}

// Class-balanced selection, worked by hand: 2 classes x 1 x 6 pixels. Class 0 is likeliest at pixels
// 0-3 (confidences 0.95, 0.6, 0.7, 0.55), class 1 at pixels 4-5 (0.8, 0.65). Share 0.5 keeps the top
// ceil(0.5 x 4) = 2 of class 0 (0.95 and 0.7) and ceil(0.5 x 2) = 1 of class 1 (0.8), although only
// 0.95 reaches the threshold 0.9; share 1 keeps everything; share 0 is the threshold alone.
TEST(ConfidentLabels, ClassShareKeepsEachClassesMostConfidentPixelsBelowTheThreshold) {
  const auto c0 = torch::tensor({0.95, 0.6, 0.7, 0.55, 0.2, 0.35});
  const auto probs = torch::stack({c0, 1 - c0}).view({2, 1, 6});
  const int v = int(kIgnoreLabel);
  EXPECT_TRUE(torch::equal(confident_labels(probs, 0.9, 0.5), torch::tensor({{0, v, 0, v, 1, v}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(confident_labels(probs, 0.9, 1.0), torch::tensor({{0, 0, 0, 0, 1, 1}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(confident_labels(probs, 0.9, 0.0), torch::tensor({{0, v, v, v, v, v}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(confident_labels(probs, 0.75, 0.25), torch::tensor({{0, v, v, v, 1, v}}, torch::kLong)));
}

// CutMix must move labels with their pixels. Image k is flat (value k) and labelled k everywhere, so
// after the colour changes each image holds exactly two values, and each must carry one label.
TEST(StrongView, CutMixBoxesCarryTheirLabelsAndCoverHalfTheImage) {
  torch::manual_seed(5);
  const int64_t n = 4, h = 24, w = 32;
  const auto ids = torch::arange(n, torch::kLong);
  const auto images = ids.to(torch::kFloat).view({n, 1, 1, 1}).expand({n, 3, h, w}).contiguous();
  const auto labels = ids.view({n, 1, 1}).expand({n, h, w}).contiguous();
  const AugmentedBatch view = strong_view(images, labels);
  ASSERT_EQ(view.images.sizes(), images.sizes());
  ASSERT_EQ(view.labels.sizes(), labels.sizes());
  for (int64_t k = 0; k < n; ++k) {
    const auto pasted = view.labels[k] == (k + n - 1) % n;  // from the previous image of the batch
    EXPECT_TRUE(torch::all(pasted | (view.labels[k] == k)).item<bool>()) << k;
    const double share = pasted.to(torch::kFloat).mean().item<double>();
    EXPECT_NEAR(share, 0.5, 0.1) << k;
    for (int64_t c = 0; c < 3; ++c) {
      const auto channel = view.images[k][c];
      const auto in_box = channel.masked_select(pasted), outside = channel.masked_select(~pasted);
      // One source image each (the blur of a flat image may differ in the last bit at the borders) ...
      EXPECT_NEAR(in_box.min().item<float>(), in_box.max().item<float>(), 1e-5) << k;
      EXPECT_NEAR(outside.min().item<float>(), outside.max().item<float>(), 1e-5) << k;
      // ... and two different ones.
      EXPECT_GT(std::abs(in_box.mean().item<float>() - outside.mean().item<float>()), 1e-3) << k;
    }
  }
}

// ClassMix from labelled images (DACS): each unlabelled image takes, with their true labels, all the
// pixels of half the classes (rounded up) of labelled image k modulo their number, and nothing else;
// void pixels are not a class and are never pasted. Labelled images hold 10 + their label, unlabelled
// ones 0 with pseudo-label 7, so the colour changes (a scale of 0.6-1.4) cannot blur the two together;
// recoloured, the pasted pixels take the unlabelled image's colour, a flat 0, so each view is flat.
TEST(StrongView, ClassMixPastesHalfTheClassesOfALabelledImageWithTheirLabels) {
  for (const PseudoMix mix : {PseudoMix::LabeledClassMix, PseudoMix::RecoloredClassMix}) {
    torch::manual_seed(7);
    const int64_t n = 3, h = 24, w = 40;
    auto bands = torch::arange(w, torch::kLong).div(8, "floor").view({1, 1, w}).expand({2, h, w}).contiguous();
    bands[1].masked_fill_(bands[1] == 4, kIgnoreLabel);  // labelled image 1: classes 0..3 and a void band
    bands[0].masked_fill_(bands[0] == 4, 5);             // labelled image 0: classes 0, 1, 2, 3, 5
    const Batch labeled{(bands.to(torch::kFloat) + 10).unsqueeze(1).expand({2, 3, h, w}).contiguous(), bands};
    const auto images = torch::zeros({n, 3, h, w});
    const auto pseudo = torch::full({n, h, w}, 7, torch::kLong);
    const AugmentedBatch view = strong_view(images, pseudo, 1, 1, mix, &labeled);
    ASSERT_EQ(view.labels.sizes(), pseudo.sizes());
    for (int64_t k = 0; k < n; ++k) {
      const auto source = bands[k % 2];
      const auto pasted = view.labels[k] != 7;
      EXPECT_TRUE(torch::equal(view.labels[k].masked_select(pasted), source.masked_select(pasted))) << k;
      EXPECT_FALSE(torch::any(pasted & (source == kIgnoreLabel)).item<bool>()) << k;
      int64_t chosen = 0;
      for (const int64_t c : {0, 1, 2, 3, 5}) {
        const auto of_class = source == c;
        if (!torch::any(of_class).item<bool>()) continue;
        const bool all = torch::all(pasted.masked_select(of_class)).item<bool>();
        EXPECT_TRUE(all || !torch::any(pasted.masked_select(of_class)).item<bool>()) << k << " class " << c;
        chosen += all;
      }
      EXPECT_EQ(chosen, k % 2 == 0 ? 3 : 2) << k;  // half of 5 classes rounded up; half of 4
      const auto first = view.images[k][0];
      if (mix == PseudoMix::LabeledClassMix) {
        EXPECT_GT(first.masked_select(pasted).mean().item<double>(), 4.0) << k;
        EXPECT_LT(first.masked_select(~pasted).mean().item<double>(), 2.0) << k;
      } else {
        EXPECT_NEAR(first.max().item<double>(), first.min().item<double>(), 1e-5) << k;
      }
    }
  }
}

// Colour transfer: each output image has, per channel, the target image's mean and standard deviation,
// and is an increasing affine function of the source image (its pixels keep their order).
TEST(StrongView, MatchColorStatisticsGivesTheTargetsMeanAndSpreadPerChannel) {
  torch::manual_seed(8);
  const auto source = torch::randn({2, 3, 12, 16}) * 0.3 + 1.5;
  const auto target = torch::randn({2, 3, 12, 16}) * torch::tensor({0.5, 1.0, 2.0}).view({1, 3, 1, 1}) - 1;
  const auto out = match_color_statistics(source, target);
  ASSERT_EQ(out.sizes(), source.sizes());
  EXPECT_TRUE(torch::allclose(out.mean({2, 3}), target.mean({2, 3}), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(out.std({2, 3}, false), target.std({2, 3}, false), 1e-4, 1e-4));
  for (int64_t k = 0; k < 2; ++k)
    for (int64_t c = 0; c < 3; ++c) {
      const auto x = source[k][c].flatten(), y = out[k][c].flatten();
      const auto centred = [](const torch::Tensor& v) { return v - v.mean(); };
      const double correlation =
          (centred(x) * centred(y)).sum().item<double>() / (centred(x).norm() * centred(y).norm()).item<double>();
      EXPECT_NEAR(correlation, 1.0, 1e-5) << k << " " << c;
    }
}

// Rescaling must move labels with their pixels. Every pixel's value is its label (vertical bands of 8
// columns, classes 0..3), so wherever a label lands its pixel must hold the same value, up to the
// blending of bilinear resizing along band edges. Shrunk views are padded with 0 labelled void.
TEST(StrongView, RescalingMovesLabelsWithTheirPixelsAndPadsWithVoid) {
  torch::manual_seed(6);
  const int64_t n = 3, h = 24, w = 32;
  const auto bands = torch::arange(w, torch::kLong).div(8, "floor").view({1, 1, w}).expand({n, h, w}).contiguous();
  const auto images = bands.to(torch::kFloat).unsqueeze(1).expand({n, 3, h, w}).contiguous();
  for (const double scale : {0.5, 2.0}) {
    const AugmentedBatch view = rescaled_view(images, bands, scale, scale);
    ASSERT_EQ(view.images.sizes(), images.sizes());
    ASSERT_EQ(view.labels.sizes(), bands.sizes());
    const auto labelled = view.labels != kIgnoreLabel;
    // Half the size: a quarter of the pixels are image; twice the size: a crop, no padding.
    EXPECT_NEAR(labelled.to(torch::kFloat).mean().item<double>(), scale < 1 ? 0.25 : 1.0, 1e-6) << scale;
    const auto error = (view.images.select(1, 0) - view.labels.to(torch::kFloat)).abs();
    EXPECT_GT((error.masked_select(labelled) < 1e-4).to(torch::kFloat).mean().item<double>(), 0.85) << scale;
    EXPECT_LE(error.masked_select(labelled).max().item<double>(), 1.0) << scale;  // neighbours' blend at most
    EXPECT_EQ(view.images.select(1, 0).masked_select(~labelled).abs().sum().item<double>(), 0.0) << scale;
    // Bands twice as wide after enlarging (16 columns): at most 2 class changes along a row, not 3.
    const auto changes = (view.labels.narrow(2, 1, w - 1) != view.labels.narrow(2, 0, w - 1)).sum(2);
    if (scale > 1) EXPECT_LE(changes.max().item<int64_t>(), 2);
  }
  // strong_view learns from the rescaled labels: at half the size each image keeps a quarter of its
  // pixels, and CutMix's box brings at most a quarter more from its neighbour, so at least half is void.
  const auto void_share = [&](double scale) {
    return (strong_view(images, bands, scale, scale).labels == kIgnoreLabel).to(torch::kFloat).mean().item<double>();
  };
  EXPECT_GE(void_share(0.5), 0.5 - 1e-6);
  EXPECT_EQ(void_share(1.0), 0.0);
}

// Strong views are learnt from in a pass of their own whose batch statistics do not enter the running
// averages: after a pseudo-label step they equal those of a step on the labelled batch alone. With
// adapt_statistics they do enter them: every batch norm layer's running mean moves.
TEST(PseudoLabelStep, LeavesBatchNormRunningStatisticsToTheLabelledBatchUnlessAdapting) {
  for (const bool adapt : {false, true}) {
    torch::manual_seed(3);
    const SegNetOptions options(Model::SegNetBasic, 3);
    SegNet plain(options), with_pseudo = copy_model(plain);
    const LoaderStep labelled{{{torch::randn({2, 3, 16, 16}), torch::randint(0, 3, {2, 16, 16}, torch::kLong)}}, 2};
    PseudoLabelOptions every_pixel;
    every_pixel.threshold = 0.0;
    every_pixel.adapt_statistics = adapt;
    std::vector<PseudoLabelStep> pseudo{{copy_model(plain), {torch::randn({2, 3, 16, 16}) * 3 + 2, {}}, 1.0, every_pixel}};
    pseudo[0].teacher->eval();
    const Objective objective{Task::Multiclass, Loss::CrossEntropy, torch::ones({3})};
    for (SegNet* model : {&plain, &with_pseudo}) {
      (*model)->train();
      torch::optim::SGD optimizer((*model)->parameters(), torch::optim::SGDOptions(0.01));
      DataParallel alone(*model, nullptr, 1, {});
      train_step(*model, optimizer, labelled, objective, Precision::Float32, torch::kCPU, alone, 0,
                 model == &with_pseudo ? &pseudo : nullptr);
    }
    EXPECT_EQ(pseudo[0].confident_fraction, 1.0);  // threshold 0: the student did learn from the strong view
    const auto a = plain->named_buffers(), b = with_pseudo->named_buffers();
    int64_t means = 0;
    for (const auto& buffer : a)
      if (buffer.key().find("running") != std::string::npos) {
        const bool equal = torch::equal(buffer.value(), b[buffer.key()]);
        if (!adapt) EXPECT_TRUE(equal) << buffer.key();
        if (adapt && buffer.key().find("running_mean") != std::string::npos) {
          EXPECT_FALSE(equal) << buffer.key();
          ++means;
        }
      }
    if (adapt) EXPECT_GT(means, 0);
    // ... and the pseudo-label term did change the weights.
    const auto pa = plain->named_parameters(), pb = with_pseudo->named_parameters();
    EXPECT_FALSE(torch::equal(pa.begin()->value(), pb[pa.begin()->key()])) << adapt;
  }
}

// The pseudo-label term is plain cross-entropy: changing the class weights changes the labelled term
// of a step only. Each step's pseudo term is its loss minus the labelled loss of the same weights.
TEST(PseudoLabelStep, PseudoLabelTermIgnoresTheClassWeights) {
  torch::manual_seed(4);
  const SegNet start(SegNetOptions(Model::SegNetBasic, 3));
  const LoaderStep labelled{{{torch::randn({2, 3, 16, 16}), torch::randint(0, 3, {2, 16, 16}, torch::kLong)}}, 2};
  const auto unlabeled = torch::randn({2, 3, 16, 16});
  // A teacher whose labels mix the classes (else any weighting of them averages out): its classifier's
  // bias centres each class's logits on this batch.
  SegNet teacher = copy_model(start);
  teacher->eval();
  {
    torch::NoGradGuard no_grad;
    auto bias = teacher->named_parameters()["classifier.bias"];
    bias.sub_(teacher->forward(unlabeled).mean({0, 2, 3}));
    const auto counts = teacher->forward(unlabeled).argmax(1).flatten().bincount({}, 3);
    ASSERT_GT(counts.min().item<int64_t>(), 2 * 16 * 16 / 10);
  }
  std::vector<double> pseudo_terms;
  for (const auto& weights : {torch::ones({3}), torch::tensor({5.0f, 0.2f, 1.0f})}) {
    const Objective objective{Task::Multiclass, Loss::CrossEntropy, weights};
    SegNet model = copy_model(start), probe = copy_model(start);
    model->train();
    probe->train();
    const Batch& batch = labelled.micro_batches[0];
    const double labelled_loss = segmentation_loss(probe->forward(batch.images), batch.labels, objective).item<double>();
    PseudoLabelOptions every_pixel;
    every_pixel.threshold = 1e-6;
    std::vector<PseudoLabelStep> pseudo{{copy_model(teacher), {unlabeled, {}}, 1.0, every_pixel}};
    pseudo[0].teacher->eval();
    torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.01));
    DataParallel alone(model, nullptr, 1, {});
    // The same step seed: the same strong view for both weightings.
    const double loss = train_step(model, optimizer, labelled, objective, Precision::Float32, torch::kCPU, alone, 9, &pseudo).loss;
    ASSERT_EQ(pseudo[0].confident_fraction, 1.0);
    pseudo_terms.push_back(loss - labelled_loss);
  }
  EXPECT_GT(pseudo_terms[0], 0.1);
  EXPECT_NEAR(pseudo_terms[0], pseudo_terms[1], 1e-4);
}

TEST(SegmentationLoss, BinaryLossesIgnoreVoidAndFallAsPredictionsImprove) {
  const auto labels = torch::tensor({{{0, 1}, {1, int(kIgnoreLabel)}}}, torch::kLong);  // 1 x 2 x 2
  for (const Loss loss : {Loss::BinaryCrossEntropy, Loss::Dice, Loss::BinaryCrossEntropyDice}) {
    const Objective objective{Task::Binary, loss, torch::ones({2})};
    const auto good = torch::tensor({{{-4.0, 4.0}, {4.0, 0.0}}}).unsqueeze(1);
    const auto bad = -good;
    auto void_changed = good.clone();
    void_changed[0][0][1][1] = -9.0;
    EXPECT_LT(segmentation_loss(good, labels, objective).item<double>(),
              segmentation_loss(bad, labels, objective).item<double>()) << to_string(loss);
    EXPECT_DOUBLE_EQ(segmentation_loss(good, labels, objective).item<double>(),
                     segmentation_loss(void_changed, labels, objective).item<double>()) << to_string(loss);
  }
}

struct Variant {
  std::string name;
  Model model;
  Upsampling decoder;
  Task task;
  std::vector<int64_t> dilation;
};
void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

class TrainVariant : public ::testing::TestWithParam<Variant> {};

// Each variant learns the synthetic shapes well above chance, and its checkpoint loads and predicts
// at an image's own size.
TEST_P(TrainVariant, BeatsChanceAndItsCheckpointPredicts) {
  const Variant v = GetParam();
  TempDir dir;
  const bool binary = v.task == Task::Binary;
  synthesize_dataset({dir.path / "data", 48, {32, 40}, 5, binary});
  auto o = tiny_run(dir.path / "data", dir.path / "run");
  o.size = {32, 40};
  o.epochs = 6;
  o.optimizer = Optimizer::Adam;
  o.model = v.model;
  o.upsampling = v.decoder;
  o.dilation = v.dilation;
  o.task = v.task;
  o.augment = augment_preset(AugmentPreset::Flip);  // as above: a few epochs on small shapes
  const auto records = train(o);
  // Multi-class chance (the commonest class everywhere) scores under 0.2 mIoU on 5 classes; binary
  // all-background about 0.4 over its two classes.
  EXPECT_GT(records.back().miou, binary ? 0.6 : 0.3) << v.name;
  EXPECT_LT(records.back().train_loss, records.front().train_loss) << v.name;
  Segmenter segmenter = Segmenter::from_checkpoint(o.out / "best.pt", torch::kCPU);
  EXPECT_EQ(segmenter.info().upsampling, v.decoder);
  cv::Mat image(29, 45, CV_8UC3, cv::Scalar(90, 120, 30));
  const cv::Mat ids = segmenter.segment(image);
  EXPECT_EQ(ids.size(), image.size());
  double max_id = 0;
  cv::minMaxLoc(ids, nullptr, &max_id);
  EXPECT_LT(max_id, binary ? 2 : 5);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, TrainVariant,
    ::testing::Values(Variant{"transposed", Model::SegNetBasic, Upsampling::Transposed, Task::Multiclass, {}},
                      Variant{"bilinear", Model::SegNetBasic, Upsampling::Bilinear, Task::Multiclass, {}},
                      Variant{"dilated", Model::SegNetBasic, Upsampling::Indices, Task::Multiclass, {1, 1, 2, 2}},
                      Variant{"bayesian", Model::BayesianSegNetBasic, Upsampling::Indices, Task::Multiclass, {}},
                      Variant{"binary", Model::SegNetBasic, Upsampling::Indices, Task::Binary, {}}),
    [](const ::testing::TestParamInfo<Variant>& info) { return info.param.name; });

// Pseudo-labels: the run records how many unlabelled pixels it learnt, and a resumed run (teacher
// restored from last.pt) ends with the weights of an uninterrupted one, with each mix (the last one also
// adapting batch norm's statistics); the mix reaches training (the runs end apart).
TEST(Train, PseudoLabelRunRecordsConfidenceAndResumesExactly) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 20, {24, 32}, 6});
  std::vector<fs::path> ends;
  for (const PseudoMix mix : {PseudoMix::CutMix, PseudoMix::LabeledClassMix, PseudoMix::RecoloredClassMix}) {
    SCOPED_TRACE(to_string(mix));
    auto whole = tiny_run(dir.path / "data", dir.path / ("whole_" + to_string(mix)));
    whole.pseudo.unlabeled = dir.path / "data" / "val";  // a folder of images
    whole.pseudo.threshold = 0.5;
    whole.pseudo.class_share = 0.5;  // an untrained network reaches no threshold: some pixels must be learnt
    whole.pseudo.rampup_epochs = 1;
    whole.pseudo.mix = mix;
    whole.pseudo.adapt_statistics = mix == PseudoMix::RecoloredClassMix;  // resumes exactly too
    whole.lr_schedule = LrSchedule::Constant;  // as in the resume test above
    const auto records = train(whole);
    for (const auto& r : records) {
      EXPECT_GT(r.pseudo_confident_fraction, 0.0);
      EXPECT_LE(r.pseudo_confident_fraction, 1.0);
    }
    auto first = whole;
    first.out = dir.path / ("parts_" + to_string(mix));
    first.epochs = 1;
    train(first);
    auto rest = first;
    rest.epochs = 2;
    rest.resume = true;
    train(rest);
    expect_same_weights(whole.out / "last.pt", rest.out / "last.pt");
    ends.push_back(whole.out / "last.pt");
  }
  // Each mix trains a different network.
  for (size_t k = 1; k < ends.size(); ++k) {
    const auto before = load_checkpoint(ends[k - 1]).model->named_parameters();
    const auto after = load_checkpoint(ends[k]).model->named_parameters();
    double apart = 0;
    for (const auto& p : before) apart += (p.value() - after[p.key()]).abs().sum().item<double>();
    EXPECT_GT(apart, 0.0) << k;
  }
}

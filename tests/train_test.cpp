#include <segnet/checkpoint.h>
#include <segnet/error.h>
#include <segnet/train.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <unistd.h>

using namespace segnet;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path = fs::temp_directory_path() /
                  ("segnet_train_test_" + std::to_string(::getpid()) + "_" +
                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

TrainOptions tiny_run(const fs::path& data, const fs::path& out) {
  TrainOptions o;
  o.data = data;
  o.model = "segnet-basic";
  o.size = {24, 32};
  o.batch = 4;
  o.epochs = 2;
  o.out = out;
  o.seed = 11;
  o.progress = false;
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
  o.optimizer = "adam";
  const auto records = train(o);
  ASSERT_EQ(records.size(), 8u);
  EXPECT_LT(records.back().train_loss, 0.7 * records.front().train_loss);
  // Predicting the commonest class everywhere scores at most 1/5 mIoU on 5 classes.
  EXPECT_GT(records.back().miou, 0.35) << "loss " << records.back().train_loss;
  std::printf("final val mIoU %.3f\n", records.back().miou);
  EXPECT_EQ(count_lines(dir.path / "run" / "metrics.csv"), 9);
  EXPECT_TRUE(fs::exists(dir.path / "run" / "best.pt"));
}

// An interrupted run resumed from last.pt ends with exactly the weights of an uninterrupted one.
TEST(Train, ResumeEndsWithTheWeightsOfAnUninterruptedRun) {
  TempDir dir;
  synthesize_dataset({dir.path / "data", 15, {24, 32}, 3});
  for (const std::string optimizer : {"sgd", "adam"}) {
    auto whole = tiny_run(dir.path / "data", dir.path / ("whole_" + optimizer));
    whole.optimizer = optimizer;
    train(whole);

    auto first = tiny_run(dir.path / "data", dir.path / ("parts_" + optimizer));
    first.optimizer = optimizer;
    first.epochs = 1;
    train(first);
    auto rest = first;
    rest.epochs = 2;
    rest.resume = true;
    ASSERT_EQ(train(rest).size(), 1u);

    expect_same_weights(whole.out / "last.pt", rest.out / "last.pt");
    EXPECT_EQ(count_lines(rest.out / "metrics.csv"), 3) << optimizer;
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

#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/files.h>

#include "data/loader.h"
#include "image_files.h"
#include "expect_error.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <unistd.h>

using namespace segnet;
namespace fs = std::filesystem;
using segnet::test::contains;
using segnet::test::error_of;
using segnet::test::TempDir;
using segnet::test::write_image;
using segnet::test::write_palette_png;

namespace {

cv::Mat grey(int rows, int cols, std::initializer_list<int> values) {
  cv::Mat m(rows, cols, CV_8UC1);
  auto it = values.begin();
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) m.at<uint8_t>(r, c) = static_cast<uint8_t>(*it++);
  return m;
}

// A dataset in the list layout whose sample i is 32x40 with label i on the bottom three quarters
// and void on the top quarter (value 5 = num_classes for even i, 255 for odd i). Images are dark
// on the left half and bright on the right so horizontal flips can be seen.
constexpr int kLoaderSamples = 5;
constexpr int64_t kLoaderClasses = 5;

void write_loader_dataset(const fs::path& dir) {
  std::string list = "# image label\n\n";
  for (int i = 0; i < kLoaderSamples; ++i) {
    cv::Mat image(32, 40, CV_8UC3, cv::Scalar(50, 100, 200));        // BGR: R=200 G=100 B=50
    image.colRange(20, 40).setTo(cv::Scalar(250, 240, 230));        // R=230 on the right
    cv::Mat label(32, 40, CV_8UC1, cv::Scalar(i));
    label.rowRange(0, 8).setTo(i % 2 ? 255 : 5);
    const std::string name = "s" + std::to_string(i) + ".png";
    write_image(dir / "img" / name, image);
    write_image(dir / "lab" / name, label);
    list += "img/" + name + " lab/" + name + "\n";
  }
  write_text(dir / "list.txt", list);
}

// The sample each batch row came from (its class id), in epoch order.
std::vector<int64_t> sample_order(const std::vector<Batch>& batches) {
  std::vector<int64_t> order;
  for (const auto& b : batches)
    for (int64_t n = 0; n < b.labels.size(0); ++n) order.push_back(b.labels[n][-1][0].item<int64_t>());
  return order;
}

// Every micro-batch of an epoch, in order.
std::vector<Batch> run_epoch(const BatchLoader& loader, uint64_t seed) {
  auto epoch = loader.epoch(seed);
  std::vector<Batch> batches;
  for (LoaderStep step; epoch.next(step);)
    batches.insert(batches.end(), step.micro_batches.begin(), step.micro_batches.end());
  return batches;
}

BatchLoader make_loader(const fs::path& dir, int64_t slots = 1, int64_t first_slot = 0, int64_t local_slots = 1) {
  BatchLoader::Options options;
  options.size = {16, 20};
  options.batch_size = 2;
  options.shuffle = true;
  options.augment = augment_preset(AugmentPreset::Flip);
  options.slots = slots;
  options.first_slot = first_slot;
  options.local_slots = local_slots;
  return BatchLoader(find_samples(dir, "list.txt"), make_label_spec(kLoaderClasses, std::nullopt), Normalization{},
                     options);
}

}  // namespace

TEST(BatchLoader, EpochYieldsBatchesOfResizedTensorsWithVoidAsIgnoreLabel) {
  TempDir dir;
  write_loader_dataset(dir.path);
  const BatchLoader loader = make_loader(dir.path);
  ASSERT_EQ(loader.samples().size(), static_cast<size_t>(kLoaderSamples));
  EXPECT_EQ(loader.steps_per_epoch(), 3);

  const auto batches = run_epoch(loader, 3);
  ASSERT_EQ(batches.size(), 3u);
  const std::vector<int64_t> sizes = {2, 2, 1};  // the last batch holds the remainder
  for (size_t k = 0; k < batches.size(); ++k) {
    const Batch& b = batches[k];
    EXPECT_EQ(b.images.sizes().vec(), std::vector<int64_t>({sizes[k], 3, 16, 20}));
    EXPECT_EQ(b.images.scalar_type(), torch::kFloat);
    EXPECT_EQ(b.labels.sizes().vec(), std::vector<int64_t>({sizes[k], 16, 20}));
    EXPECT_EQ(b.labels.scalar_type(), torch::kLong);
    for (int64_t n = 0; n < b.labels.size(0); ++n) {
      const auto label = b.labels[n];
      const int64_t id = label[-1][0].item<int64_t>();
      // Both stored void values (num_classes and 255) become kIgnoreLabel; the class id is kept.
      EXPECT_TRUE(label[0].eq(kIgnoreLabel).all().item<bool>()) << "sample " << id;
      EXPECT_TRUE(label.slice(0, 4).eq(id).all().item<bool>()) << "sample " << id;
      EXPECT_EQ(label.eq(kIgnoreLabel).sum().item<int64_t>(), 4 * 20) << "sample " << id;
      // Identity normalisation: values are RGB / 255 (red channel: 200 dark side, 230 bright side).
      const auto red = b.images[n][0];
      const float left = red[8][0].item<float>(), right = red[8][19].item<float>();
      EXPECT_TRUE((left == 200.f / 255 && right == 230.f / 255) || (left == 230.f / 255 && right == 200.f / 255))
          << left << " " << right;
      EXPECT_FLOAT_EQ(b.images[n][2][8][0].item<float>(), left == 200.f / 255 ? 50.f / 255 : 250.f / 255);
    }
  }
}

TEST(BatchLoader, EverySampleAppearsExactlyOncePerEpoch) {
  TempDir dir;
  write_loader_dataset(dir.path);
  const BatchLoader loader = make_loader(dir.path);
  for (uint64_t seed : {0, 1, 2, 3}) {
    auto order = sample_order(run_epoch(loader, seed));
    std::sort(order.begin(), order.end());
    EXPECT_EQ(order, std::vector<int64_t>({0, 1, 2, 3, 4})) << "seed " << seed;
  }
}

// Two processes loading one slot each see the micro-batches one process accumulating both sees.
TEST(BatchLoader, ProcessesLoadingOneSlotEachSeeWhatOneProcessLoadingBothSees) {
  TempDir dir;
  write_loader_dataset(dir.path);  // 5 samples: a step of 2 slots x 2 images, then 1 image < 2 slots
  const BatchLoader both = make_loader(dir.path, 2, 0, 2), first = make_loader(dir.path, 2, 0, 1),
                    second = make_loader(dir.path, 2, 1, 1);
  for (const BatchLoader* loader : {&both, &first, &second}) EXPECT_EQ(loader->steps_per_epoch(), 1);
  for (uint64_t seed : {5, 6}) {
    const auto all = run_epoch(both, seed), a = run_epoch(first, seed), b = run_epoch(second, seed);
    ASSERT_EQ(all.size(), 2u);
    ASSERT_EQ(a.size(), 1u);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_TRUE(torch::equal(all[0].images, a[0].images) && torch::equal(all[0].labels, a[0].labels));
    EXPECT_TRUE(torch::equal(all[1].images, b[0].images) && torch::equal(all[1].labels, b[0].labels));
    // The step's 4 images are the shuffled order's first 4, flipped as one process would flip them.
    const auto alone = sample_order(run_epoch(make_loader(dir.path), seed));
    auto shared = sample_order(all);
    EXPECT_EQ(shared, std::vector<int64_t>(alone.begin(), alone.begin() + 4)) << "seed " << seed;
    const auto single = run_epoch(make_loader(dir.path), seed);
    EXPECT_TRUE(torch::equal(torch::cat({all[0].images, all[1].images}), torch::cat({single[0].images, single[1].images})));
  }
}

// A last step smaller than slots x batch is shared out evenly; every slot gets at least one image.
TEST(BatchLoader, ShortLastStepIsSharedOutEvenlyOverTheSlots) {
  TempDir dir;
  write_loader_dataset(dir.path);  // 5 samples, 3 slots x 2: one step of 5 images, as 1 + 2 + 2
  const BatchLoader loader = make_loader(dir.path, 3, 0, 3);
  auto epoch = loader.epoch(1);
  LoaderStep step;
  ASSERT_TRUE(epoch.next(step));
  EXPECT_EQ(step.images, 5);
  ASSERT_EQ(step.micro_batches.size(), 3u);
  EXPECT_EQ(step.micro_batches[0].images.size(0), 1);
  EXPECT_EQ(step.micro_batches[1].images.size(0), 2);
  EXPECT_EQ(step.micro_batches[2].images.size(0), 2);
  EXPECT_FALSE(epoch.next(step));
}

TEST(BatchLoader, SameSeedGivesIdenticalBatches) {
  TempDir dir;
  write_loader_dataset(dir.path);
  const BatchLoader loader = make_loader(dir.path);
  const auto a = run_epoch(loader, 42), b = run_epoch(loader, 42);
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    EXPECT_TRUE(torch::equal(a[k].images, b[k].images)) << "batch " << k;
    EXPECT_TRUE(torch::equal(a[k].labels, b[k].labels)) << "batch " << k;
  }
}

TEST(BatchLoader, DifferentSeedGivesDifferentOrder) {
  TempDir dir;
  write_loader_dataset(dir.path);
  const BatchLoader loader = make_loader(dir.path);
  EXPECT_NE(sample_order(run_epoch(loader, 1)), sample_order(run_epoch(loader, 2)));
}

TEST(BatchLoader, FlipsSomeButNotAllSamplesAcrossEpochs) {
  TempDir dir;
  write_loader_dataset(dir.path);
  const BatchLoader loader = make_loader(dir.path);
  int flipped = 0, kept = 0;
  for (uint64_t seed = 0; seed < 4; ++seed)
    for (const auto& b : run_epoch(loader, seed))
      for (int64_t n = 0; n < b.images.size(0); ++n)
        (b.images[n][0][8][0].item<float>() == 230.f / 255 ? flipped : kept)++;
  EXPECT_GT(flipped, 0);
  EXPECT_GT(kept, 0);
}

TEST(BatchLoader, DecodingErrorOfABatchIsRethrownByNext) {
  TempDir dir;
  write_loader_dataset(dir.path);
  const BatchLoader loader = make_loader(dir.path);
  fs::remove(dir.path / "img" / "s2.png");
  const std::string message = error_of([&] { run_epoch(loader, 0); });
  EXPECT_TRUE(contains(message, (dir.path / "img" / "s2.png").string())) << message;
}

TEST(ReadList, SkipsCommentsAndBlankLinesAndResolvesPathsAgainstTheDataset) {
  TempDir dir;
  write_text(dir.path / "l.txt", "# comment\n\na.png  A.png\n  b.png\tB.png  \n");
  const auto samples = read_list(dir.path, dir.path / "l.txt");
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].image, dir.path / "a.png");
  EXPECT_EQ(samples[0].label, dir.path / "A.png");
  EXPECT_EQ(samples[1].image, dir.path / "b.png");
  EXPECT_EQ(samples[1].label, dir.path / "B.png");
}

TEST(ReadList, RejectsEmptyListNamingIt) {
  TempDir dir;
  write_text(dir.path / "empty.txt", "");
  std::string message = error_of([&] { find_samples(dir.path, "empty.txt"); });
  EXPECT_TRUE(contains(message, (dir.path / "empty.txt").string())) << message;
  write_text(dir.path / "comments.txt", "# only a comment\n\n");
  message = error_of([&] { read_list(dir.path, dir.path / "comments.txt"); });
  EXPECT_TRUE(contains(message, (dir.path / "comments.txt").string())) << message;
}

TEST(ReadList, RejectsLineWithOnlyOnePathNamingFileAndLine) {
  TempDir dir;
  write_text(dir.path / "list.txt", "a.png a_L.png\nb.png\n");
  const std::string message = error_of([&] { read_list(dir.path, dir.path / "list.txt"); });
  EXPECT_TRUE(contains(message, (dir.path / "list.txt").string())) << message;
  EXPECT_TRUE(contains(message, "line 2")) << message;
}

TEST(FindSamples, RejectsMissingListAndFolders) {
  TempDir dir;
  const std::string message = error_of([&] { find_samples(dir.path, "train.txt"); });
  EXPECT_TRUE(contains(message, (dir.path / "train.txt").string())) << message;
}

TEST(PairFolders, PairsImagesAndMasksByStemInNameOrder) {
  TempDir dir;
  const cv::Mat image(4, 4, CV_8UC3, cv::Scalar(1, 2, 3)), mask(4, 4, CV_8UC1, cv::Scalar(0));
  write_image(dir.path / "images" / "b.png", image);
  write_image(dir.path / "images" / "a.bmp", image);
  write_text(dir.path / "images" / "notes.txt", "not an image");
  write_image(dir.path / "masks" / "a.png", mask);
  write_image(dir.path / "masks" / "b.png", mask);
  write_image(dir.path / "masks" / "unused.png", mask);
  const auto samples = pair_folders(dir.path);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].image, dir.path / "images" / "a.bmp");
  EXPECT_EQ(samples[0].label, dir.path / "masks" / "a.png");
  EXPECT_EQ(samples[1].image, dir.path / "images" / "b.png");
  EXPECT_EQ(samples[1].label, dir.path / "masks" / "b.png");
  // Without a list file find_samples falls back to the folders.
  EXPECT_EQ(find_samples(dir.path, "train.txt").size(), 2u);
}

TEST(PairFolders, RejectsImageWithoutMaskNamingTheImage) {
  TempDir dir;
  write_image(dir.path / "images" / "a.png", cv::Mat(4, 4, CV_8UC3, cv::Scalar(0)));
  write_image(dir.path / "images" / "c.png", cv::Mat(4, 4, CV_8UC3, cv::Scalar(0)));
  write_image(dir.path / "masks" / "a.png", cv::Mat(4, 4, CV_8UC1, cv::Scalar(0)));
  const std::string message = error_of([&] { pair_folders(dir.path); });
  EXPECT_TRUE(contains(message, (dir.path / "images" / "c.png").string())) << message;
}

TEST(ReadLabel, MapsDefaultVoidValuesToIgnoreLabelAndKeepsClassIds) {
  TempDir dir;
  write_image(dir.path / "l.png", grey(1, 5, {0, 1, 2, 3, 255}));
  const cv::Mat label = read_label(dir.path / "l.png", make_label_spec(3, std::nullopt));
  ASSERT_EQ(label.type(), CV_8UC1);
  EXPECT_EQ(cv::countNonZero(label != grey(1, 5, {0, 1, 2, 255, 255})), 0);
}

TEST(ReadLabel, MapsExplicitVoidLabelOnly) {
  TempDir dir;
  write_image(dir.path / "l.png", grey(1, 4, {0, 1, 2, 7}));
  const LabelSpec spec = make_label_spec(3, 7);
  const cv::Mat label = read_label(dir.path / "l.png", spec);
  EXPECT_EQ(cv::countNonZero(label != grey(1, 4, {0, 1, 2, 255})), 0);
  // With an explicit void label, num_classes and 255 are no longer void.
  write_image(dir.path / "three.png", grey(1, 2, {0, 3}));
  std::string message = error_of([&] { read_label(dir.path / "three.png", spec); });
  EXPECT_TRUE(contains(message, (dir.path / "three.png").string())) << message;
  EXPECT_TRUE(contains(message, "3")) << message;
  write_image(dir.path / "white.png", grey(1, 2, {255, 0}));
  message = error_of([&] { read_label(dir.path / "white.png", spec); });
  EXPECT_TRUE(contains(message, (dir.path / "white.png").string())) << message;
  EXPECT_TRUE(contains(message, "255")) << message;
}

TEST(ReadLabel, RejectsValueThatIsNeitherClassNorVoid) {
  TempDir dir;
  write_image(dir.path / "l.png", grey(2, 2, {0, 1, 9, 255}));
  const std::string message = error_of([&] { read_label(dir.path / "l.png", make_label_spec(3, std::nullopt)); });
  EXPECT_TRUE(contains(message, (dir.path / "l.png").string())) << message;
  EXPECT_TRUE(contains(message, "label value 9")) << message;
}

TEST(ReadLabel, AcceptsGreyMaskStoredAsRgb) {
  TempDir dir;
  cv::Mat rgb;
  cv::cvtColor(grey(1, 3, {2, 0, 1}), rgb, cv::COLOR_GRAY2BGR);
  write_image(dir.path / "l.png", rgb);
  const cv::Mat label = read_label(dir.path / "l.png", make_label_spec(3, std::nullopt));
  ASSERT_EQ(label.type(), CV_8UC1);
  EXPECT_EQ(cv::countNonZero(label != grey(1, 3, {2, 0, 1})), 0);
}

TEST(ReadLabel, RejectsColourMaskNamingIt) {
  TempDir dir;
  cv::Mat colour(3, 3, CV_8UC3, cv::Scalar(1, 1, 1));
  colour.at<cv::Vec3b>(1, 1) = cv::Vec3b(0, 1, 2);
  write_image(dir.path / "colour.png", colour);
  const std::string message =
      error_of([&] { read_label(dir.path / "colour.png", make_label_spec(3, std::nullopt)); });
  EXPECT_TRUE(contains(message, (dir.path / "colour.png").string())) << message;
}

// VOC's SegmentationClass masks: the indices are the classes (255 the void border), whatever the colours.
TEST(ReadLabel, ReadsPaletteIndicesNotTheirColours) {
  TempDir dir;
  std::vector<Rgb> palette(256, Rgb{0, 0, 0});
  palette[1] = {128, 0, 0}, palette[2] = {0, 128, 0}, palette[255] = {224, 224, 192};
  const cv::Mat indices = grey(2, 3, {0, 1, 2, 255, 1, 0});
  write_palette_png(dir.path / "voc.png", indices, palette);
  ASSERT_EQ(cv::imread((dir.path / "voc.png").string(), cv::IMREAD_UNCHANGED).channels(), 3);  // OpenCV: colours
  const cv::Mat label = read_label(dir.path / "voc.png", make_label_spec(21, std::nullopt));
  EXPECT_EQ(cv::countNonZero(label != indices), 0);
  // An index that is no class is reported like any stored value.
  write_palette_png(dir.path / "bad.png", grey(1, 2, {0, 30}), palette);
  const std::string message = error_of([&] { read_label(dir.path / "bad.png", make_label_spec(21, std::nullopt)); });
  EXPECT_TRUE(contains(message, "label value 30")) << message;
}

TEST(ReadLabel, MapsClassColoursAndNamesAnUnknownColourWithItsPixel) {
  TempDir dir;
  LabelSpec spec = make_label_spec(2, std::nullopt);
  spec.format = LabelFormat::Color;
  spec.class_colors = {{128, 64, 128}, {0, 0, 142}};
  spec.void_colors = {{0, 0, 0}};
  cv::Mat rgb(2, 3, CV_8UC3, cv::Scalar(128, 64, 128));
  rgb.at<cv::Vec3b>(0, 1) = {0, 0, 142};
  rgb.at<cv::Vec3b>(1, 2) = {0, 0, 0};
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  write_image(dir.path / "c.png", bgr);
  EXPECT_EQ(cv::countNonZero(read_label(dir.path / "c.png", spec) != grey(2, 3, {0, 1, 0, 0, 0, 255})), 0);
  bgr.at<cv::Vec3b>(1, 0) = {3, 2, 1};  // RGB (1, 2, 3)
  write_image(dir.path / "odd.png", bgr);
  const std::string message = error_of([&] { read_label(dir.path / "odd.png", spec); });
  EXPECT_TRUE(contains(message, (dir.path / "odd.png").string())) << message;
  EXPECT_TRUE(contains(message, "(1, 2, 3)")) << message;
  EXPECT_TRUE(contains(message, "x 0, y 1")) << message;
}

// Cityscapes-style: stored labelIds become train ids through the map, unlisted values are errors.
TEST(ReadLabel, LabelMapTranslatesStoredValuesAndRejectsUnlistedOnes) {
  TempDir dir;
  std::ofstream(dir.path / "map.txt") << "# labelId trainId\n0 void\n7 0\n26 1  # car\n\n";
  LabelSpec spec = make_label_spec(2, std::nullopt);
  spec.value_map = read_label_map(dir.path / "map.txt", 2);
  write_image(dir.path / "l.png", grey(1, 4, {7, 26, 0, 7}));
  EXPECT_EQ(cv::countNonZero(read_label(dir.path / "l.png", spec) != grey(1, 4, {0, 1, 255, 0})), 0);
  EXPECT_EQ(spec.stored_void(), 0);
  write_image(dir.path / "other.png", grey(1, 2, {7, 1}));  // 1 is a class id, but not in the map
  const std::string message = error_of([&] { read_label(dir.path / "other.png", spec); });
  EXPECT_TRUE(contains(message, "label value 1")) << message;
  EXPECT_TRUE(contains(message, "label map")) << message;
}

TEST(ReadLabelMap, NamesTheFileAndLineOfABadEntry) {
  TempDir dir;
  for (const std::string bad : {"7 0\n8 x\n", "7 0\n8 5\n", "7 0\n7 1\n", "7 0\n-3 1\n", "7\n"}) {
    std::ofstream(dir.path / "map.txt") << bad;
    const std::string message = error_of([&] { read_label_map(dir.path / "map.txt", 2); });
    EXPECT_TRUE(contains(message, (dir.path / "map.txt").string())) << message;
    EXPECT_TRUE(contains(message, bad == "7\n" ? "line 1" : "line 2")) << bad << ": " << message;
  }
}

// ADE20K-style: 0 is void and class k is stored as k + 1 (MMSegmentation's reduce_zero_label).
TEST(ReadLabel, VoidLabelZeroMeansClassesAreStoredFromOne) {
  TempDir dir;
  const LabelSpec spec = make_label_spec(3, 0);
  write_image(dir.path / "l.png", grey(1, 5, {0, 1, 2, 3, 255}));
  EXPECT_EQ(cv::countNonZero(read_label(dir.path / "l.png", spec) != grey(1, 5, {255, 0, 1, 2, 255})), 0);
  write_image(dir.path / "four.png", grey(1, 1, {4}));
  EXPECT_TRUE(contains(error_of([&] { read_label(dir.path / "four.png", spec); }), "label value 4"));
}

TEST(ReadImage, DecodesAsRgb) {
  TempDir dir;
  write_image(dir.path / "i.png", cv::Mat(2, 3, CV_8UC3, cv::Scalar(10, 20, 30)));  // BGR
  const cv::Mat rgb = read_image(dir.path / "i.png", std::nullopt);
  ASSERT_EQ(rgb.type(), CV_8UC3);
  EXPECT_EQ(rgb.at<cv::Vec3b>(1, 2), cv::Vec3b(30, 20, 10));
}

TEST(ReadImage, RejectsMissingFileNamingIt) {
  TempDir dir;
  const fs::path file = dir.path / "missing.png";
  const std::string message = error_of([&] { read_image(file, std::nullopt); });
  EXPECT_TRUE(contains(message, file.string())) << message;
  // The same through a list entry: the missing image is named, not only the list.
  write_image(dir.path / "l.png", grey(1, 1, {0}));
  const std::string via_sample =
      error_of([&] { read_sample({file, dir.path / "l.png"}, make_label_spec(2, std::nullopt), std::nullopt); });
  EXPECT_TRUE(contains(via_sample, file.string())) << via_sample;
}

TEST(ReadImage, RejectsCorruptPngNamingIt) {
  TempDir dir;
  const fs::path file = dir.path / "corrupt.png";
  std::string bytes(600, '\0');
  cv::RNG rng(5);
  for (char& c : bytes) c = static_cast<char>(rng.uniform(0, 256));
  write_text(file, bytes);
  std::string message = error_of([&] { read_image(file, std::nullopt); });
  EXPECT_TRUE(contains(message, file.string())) << message;
  message = error_of([&] { read_label(file, make_label_spec(2, std::nullopt)); });
  EXPECT_TRUE(contains(message, file.string())) << message;
}

TEST(ReadImage, RejectsTruncatedPngNamingIt) {
  TempDir dir;
  const fs::path file = dir.path / "truncated.png";
  cv::Mat noise(64, 64, CV_8UC3);
  cv::randu(noise, 0, 256);  // incompressible, so the cut lands inside the pixel data
  write_image(file, noise);
  fs::resize_file(file, fs::file_size(file) / 2);
  const std::string message = error_of([&] { read_image(file, std::nullopt); });
  EXPECT_TRUE(contains(message, file.string())) << message;
}

TEST(ReadImage, SixteenBitImagesAreMappedThroughTheInputRangeClippedOutsideIt) {
  TempDir dir;
  // 12-bit values in a 16-bit grey PNG: 0 -> 0, 1000 -> 62.27, 2048 -> 127.53, 4095 -> 255, 5000 clipped.
  cv::Mat deep(1, 5, CV_16UC1);
  const uint16_t values[] = {0, 1000, 2048, 4095, 5000};
  for (int c = 0; c < 5; ++c) deep.at<uint16_t>(0, c) = values[c];
  write_image(dir.path / "grey16.png", deep);
  const cv::Mat grey8 = read_image(dir.path / "grey16.png", InputRange{0, 4095});
  ASSERT_EQ(grey8.type(), CV_8UC3);
  const int expected[] = {0, 62, 128, 255, 255};
  for (int c = 0; c < 5; ++c)
    EXPECT_EQ(grey8.at<cv::Vec3b>(0, c), cv::Vec3b(expected[c], expected[c], expected[c])) << "column " << c;

  // Colour, stored BGR, with a range that starts above 0: 900 -> 0 (clipped), 1600 -> 153, 2100 -> 255.
  write_image(dir.path / "bgr16.png", cv::Mat(1, 1, CV_16UC3, cv::Scalar(900, 1600, 2100)));
  EXPECT_EQ(read_image(dir.path / "bgr16.png", InputRange{1000, 2000}).at<cv::Vec3b>(0, 0), cv::Vec3b(255, 153, 0));

  // The same in a 16-bit TIFF.
  write_image(dir.path / "bgr16.tif", cv::Mat(1, 1, CV_16UC3, cv::Scalar(900, 1600, 2100)));
  EXPECT_EQ(read_image(dir.path / "bgr16.tif", InputRange{1000, 2000}).at<cv::Vec3b>(0, 0), cv::Vec3b(255, 153, 0));
}

TEST(ReadImage, ADepthThatDoesNotFitTheInputRangeIsAnErrorNamingTheFile) {
  TempDir dir;
  cv::Mat deep(1, 2, CV_16UC1);
  deep.at<uint16_t>(0, 0) = 3, deep.at<uint16_t>(0, 1) = 4012;
  write_image(dir.path / "deep.png", deep);
  std::string message = error_of([&] { read_image(dir.path / "deep.png", std::nullopt); });
  EXPECT_TRUE(contains(message, (dir.path / "deep.png").string() + ": 16-bit image (values 3..4012)")) << message;
  write_image(dir.path / "flat.png", cv::Mat(1, 1, CV_8UC3, cv::Scalar(1, 2, 3)));
  message = error_of([&] { read_image(dir.path / "flat.png", InputRange{0, 4095}); });
  EXPECT_TRUE(contains(message, (dir.path / "flat.png").string() + ": 8-bit image")) << message;
  EXPECT_TRUE(contains(message, "0..4095")) << message;
  write_image(dir.path / "float.tif", cv::Mat(1, 1, CV_32FC3, cv::Scalar(0.2, 0.3, 0.4)));
  message = error_of([&] { read_image(dir.path / "float.tif", InputRange{0, 1}); });
  EXPECT_TRUE(contains(message, (dir.path / "float.tif").string() + ": neither an 8-bit nor a 16-bit image")) << message;
  for (const InputRange bad : {InputRange{5, 5}, InputRange{10, 2}, InputRange{0, std::nan("")}}) {
    message = error_of([&] { validate(bad); });
    EXPECT_EQ(message.rfind("input_range must be LOW < HIGH", 0), 0u) << message;
  }
}

TEST(ReadSample, RejectsMaskWhoseSizeDiffersFromItsImage) {
  TempDir dir;
  write_image(dir.path / "i.png", cv::Mat(4, 6, CV_8UC3, cv::Scalar(0)));
  write_image(dir.path / "l.png", cv::Mat(4, 5, CV_8UC1, cv::Scalar(0)));
  const std::string message =
      error_of([&] { read_sample({dir.path / "i.png", dir.path / "l.png"}, make_label_spec(2, std::nullopt), std::nullopt); });
  EXPECT_TRUE(contains(message, (dir.path / "l.png").string())) << message;
  EXPECT_TRUE(contains(message, (dir.path / "i.png").string())) << message;
}

TEST(ComputeStatistics, MatchesHandComputedMeanStdAndClassPixels) {
  TempDir dir;
  // Two 2x2 images (channel values 0, 51 = 0.2, 102 = 0.4, 255 = 1 of full scale).
  // R: image a all 0, image b all 255              -> mean 0.5,  std 0.5
  // G: a {0, 102, 0, 102}, b all 102               -> mean 0.3,  E[x^2] 0.12, std sqrt(0.03)
  // B: a {255, 0, 0, 0}, b all 0                   -> mean 1/8,  std sqrt(1/8 - 1/64)
  cv::Mat a(2, 2, CV_8UC3), b(2, 2, CV_8UC3, cv::Scalar(0, 102, 255));  // BGR
  a.at<cv::Vec3b>(0, 0) = {255, 0, 0};
  a.at<cv::Vec3b>(0, 1) = {0, 102, 0};
  a.at<cv::Vec3b>(1, 0) = {0, 0, 0};
  a.at<cv::Vec3b>(1, 1) = {0, 102, 0};
  write_image(dir.path / "a.png", a);
  write_image(dir.path / "b.png", b);
  // 3 classes, void 3 and 255. a: two pixels of 0, one of 1, one void; b: three of 1, one void.
  write_image(dir.path / "a_L.png", grey(2, 2, {0, 0, 1, 3}));
  write_image(dir.path / "b_L.png", grey(2, 2, {1, 255, 1, 1}));
  const std::vector<SamplePaths> samples = {{dir.path / "a.png", dir.path / "a_L.png"},
                                            {dir.path / "b.png", dir.path / "b_L.png"}};
  const auto stats = compute_statistics(samples, make_label_spec(3, std::nullopt), std::nullopt, {2, 2});

  EXPECT_NEAR(stats.norm.mean[0], 0.5, 1e-5);
  EXPECT_NEAR(stats.norm.mean[1], 0.3, 1e-5);
  EXPECT_NEAR(stats.norm.mean[2], 0.125, 1e-5);
  EXPECT_NEAR(stats.norm.std[0], 0.5, 1e-5);
  EXPECT_NEAR(stats.norm.std[1], std::sqrt(0.03), 1e-5);
  EXPECT_NEAR(stats.norm.std[2], std::sqrt(0.125 - 0.015625), 1e-5);
  EXPECT_EQ(stats.class_pixels, std::vector<int64_t>({2, 4, 0}));
  // All pixels (void included) of the images where the class occurs.
  EXPECT_EQ(stats.present_pixels, std::vector<int64_t>({4, 8, 0}));
}

TEST(ComputeStatistics, RejectsBadLabelNamingItsFile) {
  TempDir dir;
  write_image(dir.path / "a.png", cv::Mat(2, 2, CV_8UC3, cv::Scalar(0)));
  write_image(dir.path / "a_L.png", grey(2, 2, {0, 0, 1, 7}));
  const std::string message = error_of([&] {
    compute_statistics({{dir.path / "a.png", dir.path / "a_L.png"}}, make_label_spec(3, std::nullopt), std::nullopt, {2, 2});
  });
  EXPECT_TRUE(contains(message, (dir.path / "a_L.png").string())) << message;
  EXPECT_TRUE(contains(message, "7")) << message;
}

TEST(LabelTensor, SharesTheImagesPixelsAndLabelImageCopiesThemBack) {
  cv::Mat ids(3, 5, CV_8UC1);
  cv::randu(ids, 0, 12);
  const auto t = label_tensor(ids);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{3, 5}));
  ids.at<uint8_t>(1, 2) = 200;  // a view: the tensor sees the change
  EXPECT_EQ(t[1][2].item<int>(), 200);
  const cv::Mat back = label_image(t.to(torch::kLong));
  EXPECT_EQ(back.type(), CV_8UC1);
  EXPECT_EQ(cv::countNonZero(back != ids), 0);
  ids.at<uint8_t>(0, 0) = 9;  // a copy: the image stays as it was
  EXPECT_NE(back.at<uint8_t>(0, 0), 9);
}

TEST(ReadClassesCsv, ReadsCamVidStyleFileWithHeader) {
  TempDir dir;
  write_text(dir.path / "classes.csv",
             "id,name,r,g,b\n0,Sky,128,128,128\n1,Building,128,0,0\n 2 , Pole , 192 , 192 , 128 \r\n");
  const auto classes = read_classes_csv(dir.path / "classes.csv");
  ASSERT_EQ(classes.size(), 3u);
  EXPECT_EQ(classes[0].name, "Sky");
  EXPECT_EQ(classes[1].name, "Building");
  EXPECT_EQ(classes[2].name, "Pole");
  EXPECT_EQ(classes[1].rgb, (std::array<uint8_t, 3>{128, 0, 0}));
  EXPECT_EQ(classes[2].rgb, (std::array<uint8_t, 3>{192, 192, 128}));
}

TEST(ReadClassesCsv, RejectsOutOfOrderIdsNamingTheFile) {
  TempDir dir;
  write_text(dir.path / "classes.csv", "id,name,r,g,b\n0,Sky,128,128,128\n2,Building,128,0,0\n");
  const std::string message = error_of([&] { read_classes_csv(dir.path / "classes.csv"); });
  EXPECT_TRUE(contains(message, (dir.path / "classes.csv").string())) << message;
  EXPECT_TRUE(contains(message, "line 3")) << message;
}

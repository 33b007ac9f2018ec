#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/files.h>

#include <opencv2/imgproc.hpp>

#include <fstream>
#include <random>

namespace segnet {

namespace {

// Classes of the synthetic scenes; each has its own colour range and texture.
const std::vector<ClassInfo> kSynthClasses = {
    {"background", {70, 110, 160}}, {"road", {128, 64, 128}}, {"disc", {220, 20, 60}},
    {"box", {107, 142, 35}},        {"triangle", {250, 170, 30}}};
constexpr uint8_t kSynthVoid = 5;  // like CamVid: void = number of classes

struct Painter {
  std::mt19937_64 rng;
  double uniform(double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); }
  int integer(int a, int b) { return std::uniform_int_distribution<int>(a, b)(rng); }
  cv::Vec3b jitter(cv::Vec3b base, int amount) {
    cv::Vec3b c;
    for (int k = 0; k < 3; ++k) c[k] = cv::saturate_cast<uint8_t>(base[k] + integer(-amount, amount));
    return c;
  }
};

// Paints `mask` pixels of `image` with the class's texture.
void paint(cv::Mat& image, const cv::Mat& mask, int cls, Painter& p) {
  const cv::Vec3b base = p.jitter(cv::Vec3b(kSynthClasses[cls].rgb[0], kSynthClasses[cls].rgb[1],
                                            kSynthClasses[cls].rgb[2]), 35);
  const int period = p.integer(4, 8);
  for (int y = 0; y < image.rows; ++y)
    for (int x = 0; x < image.cols; ++x) {
      if (!mask.at<uint8_t>(y, x)) continue;
      double shade = 1.0;
      switch (cls) {
        case 0: shade = 0.7 + 0.5 * y / image.rows; break;                      // vertical gradient
        case 1: shade = 0.85 + 0.3 * p.uniform(0, 1); break;                    // grainy asphalt
        case 2: shade = 1.0; break;                                             // smooth
        case 3: shade = (y / period) % 2 ? 0.65 : 1.0; break;                   // stripes
        case 4: shade = ((x / period) + (y / period)) % 2 ? 0.7 : 1.0; break;  // checks
      }
      cv::Vec3b& px = image.at<cv::Vec3b>(y, x);
      for (int k = 0; k < 3; ++k) px[k] = cv::saturate_cast<uint8_t>(base[k] * shade);
    }
}

void make_scene(Size2 size, Painter& p, cv::Mat& image, cv::Mat& label) {
  const int h = static_cast<int>(size.height), w = static_cast<int>(size.width);
  image = cv::Mat(h, w, CV_8UC3);
  label = cv::Mat(h, w, CV_8UC1, cv::Scalar(0));
  paint(image, cv::Mat(h, w, CV_8UC1, cv::Scalar(1)), 0, p);

  cv::Mat road(h, w, CV_8UC1, cv::Scalar(0));
  const int horizon = static_cast<int>(h * p.uniform(0.55, 0.8));
  road.rowRange(horizon, h).setTo(1);
  paint(image, road, 1, p);
  label.setTo(1, road);

  const int shapes = p.integer(2, 4), side = std::min(h, w);
  for (int s = 0; s < shapes; ++s) {
    const int cls = p.integer(2, 4);
    const cv::Point c(p.integer(0, w - 1), p.integer(0, h - 1));
    const int r = std::max(2, static_cast<int>(side * p.uniform(0.08, 0.22)));
    cv::Mat mask(h, w, CV_8UC1, cv::Scalar(0));
    std::vector<cv::Point> outline;
    if (cls == 2) {
      cv::circle(mask, c, r, cv::Scalar(1), cv::FILLED);
    } else if (cls == 3) {
      outline = {{c.x - r, c.y - r}, {c.x + r, c.y - r}, {c.x + r, c.y + r}, {c.x - r, c.y + r}};
    } else {
      outline = {{c.x, c.y - r}, {c.x + r, c.y + r}, {c.x - r, c.y + r}};
    }
    if (!outline.empty()) cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{outline}, cv::Scalar(1));
    paint(image, mask, cls, p);
    label.setTo(cls, mask);
    // A thin void border, as in CamVid, where the true class is ambiguous.
    cv::Mat border;
    cv::morphologyEx(mask, border, cv::MORPH_GRADIENT, cv::Mat::ones(3, 3, CV_8U));
    label.setTo(kSynthVoid, border);
  }
  cv::Mat noise(h, w, CV_16SC3);
  cv::randn(noise, 0, 12);
  cv::Mat noisy;
  image.convertTo(noisy, CV_16SC3);
  noisy += noise;
  noisy.convertTo(image, CV_8UC3);
}

}  // namespace

void synthesize_dataset(const SynthOptions& options) {
  if (options.count < 2) throw OptionError("count", "must be at least 2 (one image for train, one for val)");
  const int64_t val_count = std::max<int64_t>(1, options.count / 5);
  if (fs::exists(options.out) && !fs::is_empty(options.out))
    throw Error(options.out, "already exists and is not empty: synth writes a new dataset there");
  for (const char* sub : {"train", "trainannot", "val", "valannot"}) fs::create_directories(options.out / sub);
  std::ofstream train_list(options.out / "train.txt"), val_list(options.out / "val.txt");
  if (!train_list || !val_list) throw Error(options.out, "cannot write list files");
  Painter painter{std::mt19937_64(options.seed)};
  for (int64_t i = 0; i < options.count; ++i) {
    const bool val = i >= options.count - val_count;
    const std::string name = (val ? "val_" : "train_") + std::to_string(i) + ".png";
    const std::string images = val ? "val/" : "train/", labels = val ? "valannot/" : "trainannot/";
    cv::Mat image, label;
    make_scene(options.size, painter, image, label);
    if (options.binary) {  // shapes (and their borders) are foreground
      cv::Mat road_or_background = label <= 1;
      label.setTo(255);
      label.setTo(0, road_or_background);
    }
    write_png(options.out / images / name, image);
    write_png(options.out / labels / name, label);
    (val ? val_list : train_list) << images << name << ' ' << labels << name << '\n';
  }
  write_classes_csv(options.out / "classes.csv",
                    options.binary ? std::vector<ClassInfo>{{"background", {0, 0, 0}}, {"shape", {255, 40, 40}}} : kSynthClasses);
}

}  // namespace segnet

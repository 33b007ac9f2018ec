// The charts, drawn with PLplot (Debian's libplplot-dev, a plotting library: axes, ticks, labels and
// legends come from it) through its "memcairo" driver, which renders with Cairo and Pango into a
// buffer: no display, no files of its own; the buffer is written with write_png (atomically).
#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/report.h>

#include <plplot.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace segnet {

namespace {

// Colour map 0 (PLplot's indexed colours) as the charts use it.
enum Colour : PLINT {
  kBackground = 0,
  kInk = 1,        // axes and text
  kGrid = 2,
  kLoss = 3,
  kGlobal = 4,
  kClassAvg = 5,
  kMiou = 6,
  kBar = 7,
  kMissing = 8,    // rows without truth pixels, n/a values
  kWhiteInk = 9,
  kMeanLine = 10,
  kMutedInk = 11,  // "n/a"
};

// Text height in pixels, whatever the image's size (PLplot's default follows the page's size).
constexpr double kTextPixels = 15.5;
// A text's width in pixels per character and character height (DejaVu Sans, with room for capitals).
constexpr double kCharWidth = 0.8;

void set_colours() {
  plscmap0n(16);
  const int rgb[][3] = {{255, 255, 255}, {0, 0, 0},      {215, 215, 215}, {31, 119, 180}, {255, 127, 14}, {44, 160, 44},
                        {214, 39, 40},   {70, 130, 180}, {190, 190, 190}, {255, 255, 255}, {120, 0, 120},
                        {110, 110, 110}};
  for (PLINT i = 0; i < static_cast<PLINT>(std::size(rgb)); ++i) plscol0(i, rgb[i][0], rgb[i][1], rgb[i][2]);
  // Colour map 1 (the confusion matrix): white to dark blue.
  PLFLT position[] = {0.0, 0.5, 1.0}, r[] = {1.0, 0.42, 0.03}, g[] = {1.0, 0.68, 0.19}, b[] = {1.0, 0.84, 0.42};
  plscmap1n(256);
  plscmap1l(/*itype=rgb*/ 1, 3, position, r, g, b, nullptr);
}

// PLplot keeps its state in global streams: one chart at a time in this process.
std::mutex& plplot_mutex() {
  static std::mutex m;
  return m;
}

// The check, with plplot_mutex() held: plinit exits the process when the driver is missing.
void require_memcairo(const std::filesystem::path& png) {
  std::vector<const char*> menu_entries(128), device_names(128);
  const char** menus = menu_entries.data();
  const char** names = device_names.data();
  PLINT count = static_cast<PLINT>(device_names.size());  // in: room; out: devices
  plgDevs(&menus, &names, &count);
  bool found = false;
  for (PLINT i = 0; i < count; ++i) found = found || std::strcmp(names[i], "memcairo") == 0;
  if (!found) throw Error(png, "cannot draw: PLplot's Cairo driver is not installed (Debian: plplot-driver-cairo)");
}

// One PLplot stream drawing into an RGB image of `size`.
class Canvas {
 public:
  Canvas(cv::Size size, const std::filesystem::path& png) : lock_(plplot_mutex()), image_(size, CV_8UC3, cv::Scalar::all(255)) {
    require_memcairo(png);
    plgstrm(&previous_);
    plmkstrm(&stream_);
    plsdev("memcairo");
    plsmem(size.width, size.height, image_.data);
    set_colours();
    plinit();
    pladv(0);
    plcol0(kInk);
    plwidth(1.0);
    PLFLT default_mm = 0, height_mm = 0, xmin, xmax, ymin, ymax;
    plgchr(&default_mm, &height_mm);
    plgspa(&xmin, &xmax, &ymin, &ymax);
    text_ = kTextPixels / (default_mm * size.width / (xmax - xmin));
    plschr(0, text_);
  }
  Canvas(const Canvas&) = delete;
  Canvas& operator=(const Canvas&) = delete;
  ~Canvas() { end(); }

  // The drawing, once PLplot has copied it into the image.
  const cv::Mat& finish() {
    end();
    return image_;
  }
  // The scale (of PLplot's default character height) of normal text, and that text's height in pixels.
  double text() const { return text_; }
  double char_pixels() const { return kTextPixels; }
  int width() const { return image_.cols; }
  int height() const { return image_.rows; }

 private:
  void end() {
    if (ended_) return;
    ended_ = true;
    plend1();
    plsstrm(previous_);
  }

  std::lock_guard<std::mutex> lock_;
  cv::Mat image_;
  PLINT previous_ = 0, stream_ = 0;
  double text_ = 1;
  bool ended_ = false;
};

std::string fixed(double v, int decimals) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", decimals, v);
  return text;
}

// A tick spacing of 1, 2 or 5 times a power of ten giving at most `ticks` intervals over `span`.
double nice_step(double span, int ticks) {
  if (!(span > 0)) return 1;
  const double raw = span / ticks, power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * power >= raw) return m * power;
  return 10 * power;
}

// A viewport in pixels from the image's top-left corner.
void viewport_pixels(const Canvas& c, double left, double right, double top, double bottom) {
  plvpor(left / c.width(), right / c.width(), 1 - bottom / c.height(), 1 - top / c.height());
}

void fill_rectangle(double x0, double x1, double y0, double y1) {
  PLFLT x[] = {x0, x1, x1, x0}, y[] = {y0, y0, y1, y1};
  plfill(4, x, y);
}

// A series as lines through its finite points (broken at NaN), with a marker at each point when there
// are few.
void plot_series(const std::vector<PLFLT>& x, const std::vector<PLFLT>& y, PLINT colour) {
  plcol0(colour);
  plwidth(2.5);
  std::vector<PLFLT> sx, sy;
  auto flush = [&] {
    if (sx.size() > 1) plline(static_cast<PLINT>(sx.size()), sx.data(), sy.data());
    sx.clear(), sy.clear();
  };
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isfinite(y[i])) sx.push_back(x[i]), sy.push_back(y[i]);
    else flush();
  }
  flush();
  plwidth(1.0);
  if (x.size() <= 60)
    for (size_t i = 0; i < x.size(); ++i)
      if (std::isfinite(y[i])) {
        PLFLT px = x[i], py = y[i];
        plpoin(1, &px, &py, 17);  // a small filled circle
      }
  plcol0(kInk);
}

// A legend of line entries at the right of the current viewport, outside it.
void legend(const std::vector<std::string>& labels, const std::vector<PLINT>& colours) {
  const PLINT n = static_cast<PLINT>(labels.size());
  std::vector<const char*> text, symbols(n, "#(728)");
  for (const auto& l : labels) text.push_back(l.c_str());
  std::vector<PLINT> opt(n, PL_LEGEND_LINE), text_colours(n, kInk), styles(n, 1), symbol_numbers(n, 1);
  std::vector<PLFLT> widths(n, 2.5), symbol_scales(n, 1.0);
  PLFLT width = 0, height = 0;
  pllegend(&width, &height, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
           PL_POSITION_RIGHT | PL_POSITION_TOP | PL_POSITION_OUTSIDE, 0.02, 0.0, 0.06, kBackground, kInk, 1, 0, 0, n,
           opt.data(), 1.0, 0.85, 2.0, 0.0, text_colours.data(), text.data(), nullptr, nullptr, nullptr, nullptr,
           colours.data(), styles.data(), widths.data(), colours.data(), symbol_scales.data(), symbol_numbers.data(),
           symbols.data());
}

// Epoch axis limits and tick spacing (whole epochs).
struct EpochAxis {
  double min, max, step;
};
EpochAxis epoch_axis(const std::vector<EpochMetrics>& rows) {
  double lo = static_cast<double>(rows.front().epoch), hi = lo;
  for (const auto& r : rows) lo = std::min(lo, double(r.epoch)), hi = std::max(hi, double(r.epoch));
  const double step = std::max(1.0, nice_step(hi - lo, 10));
  return {lo - 0.5, hi + 0.5, step};
}

void epoch_box(const EpochAxis& axis, const char* y_options, double y_step) {
  plcol0(kGrid);
  plbox("g", axis.step, 0, "g", y_step, 0);
  plcol0(kInk);
  plbox("bcnst", axis.step, axis.step >= 5 ? 5 : 1, y_options, y_step, 0);
}

}  // namespace

void require_chart_driver(const std::filesystem::path& png) {
  const std::lock_guard<std::mutex> lock(plplot_mutex());
  require_memcairo(png);
}

void draw_training_curves(const std::vector<EpochMetrics>& rows, const std::filesystem::path& png) {
  if (rows.empty()) throw Error(png, "cannot draw training curves of no epochs");
  std::vector<PLFLT> x, loss, g, c, miou;
  for (const auto& r : rows)
    x.push_back(double(r.epoch)), loss.push_back(r.train_loss), g.push_back(r.global_acc), c.push_back(r.class_avg_acc),
        miou.push_back(r.miou);
  const auto any_finite = [](const std::vector<PLFLT>& v) { return std::any_of(v.begin(), v.end(), [](PLFLT a) { return std::isfinite(a); }); };
  const bool validation = any_finite(g) || any_finite(c) || any_finite(miou);
  const EpochAxis axis = epoch_axis(rows);

  Canvas canvas({kCurvesWidth, kCurvesHeight}, png);
  const double left = 105, right = kCurvesWidth - 265;  // the legends go right of the panels

  // Train loss: its own scale, padded, from 0 when that does not squash the curve.
  double lo = INFINITY, hi = -INFINITY;
  for (PLFLT v : loss)
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (lo >= 0 && lo < 0.4 * hi) lo = 0;
  const double pad = hi > lo ? 0.06 * (hi - lo) : std::max(0.5 * std::fabs(hi), 0.5);
  const double loss_min = lo == 0 ? 0 : lo - pad, loss_max = hi + pad;
  viewport_pixels(canvas, left, right, 45, validation ? 335 : kCurvesHeight - 75);
  plwind(axis.min, axis.max, loss_min, loss_max);
  epoch_box(axis, "bcnstv", 0);
  plot_series(x, loss, kLoss);
  const auto last = rows.back();
  const std::string title = "Training loss (epoch " + std::to_string(last.epoch) + ": " +
                            (std::isfinite(last.train_loss) ? fixed(last.train_loss, 4) : std::string("n/a")) + ")" +
                            (validation ? "" : "; no validation list");
  pllab(validation ? "" : "epoch", "loss", title.c_str());
  legend({"train loss"}, {kLoss});

  if (validation) {
    viewport_pixels(canvas, left, right, 440, kCurvesHeight - 75);
    plwind(axis.min, axis.max, 0, 1);
    epoch_box(axis, "bcnstv", 0.1);
    plot_series(x, g, kGlobal);
    plot_series(x, c, kClassAvg);
    plot_series(x, miou, kMiou);
    std::string title = "Validation";
    size_t best = rows.size();
    for (size_t i = 0; i < rows.size(); ++i)
      if (std::isfinite(rows[i].miou) && (best == rows.size() || rows[i].miou > rows[best].miou)) best = i;
    if (best < rows.size())
      title += " (best mIoU " + fixed(rows[best].miou, 3) + " at epoch " + std::to_string(rows[best].epoch) + ")";
    pllab("epoch", "score", title.c_str());
    legend({"G (global acc)", "C (class avg acc)", "mIoU"}, {kGlobal, kClassAvg, kMiou});
  }
  write_png(png, canvas.finish());
}

namespace {

std::string checked_name(const std::vector<std::string>& names, int64_t i) { return names[static_cast<size_t>(i)]; }

void check_names(const ConfusionMatrix& m, const std::vector<std::string>& names, const std::filesystem::path& png) {
  if (static_cast<int64_t>(names.size()) != m.num_classes())
    throw Error(png, "cannot draw: " + std::to_string(names.size()) + " class names for " +
                         std::to_string(m.num_classes()) + " classes");
}

// The longest name's width in characters.
size_t longest(const std::vector<std::string>& names) {
  size_t n = 0;
  for (const auto& s : names) n = std::max(n, s.size());
  return n;
}

}  // namespace

void draw_confusion(const ConfusionMatrix& m, const std::vector<std::string>& names, const std::filesystem::path& png) {
  check_names(m, names, png);
  const int64_t n = m.num_classes();
  Canvas canvas({kConfusionWidth, kConfusionHeight}, png);
  // Square cells in a square grid; the names' room (about 0.6 of a character height per letter) at
  // the left and below, shrinking the names when the cells are smaller than the letters.
  const double grid = 620;
  const double name_scale = std::min(1.0, 0.8 * (grid / double(n)) / canvas.char_pixels());
  const double name_pixels =
      std::min(260.0, kCharWidth * canvas.char_pixels() * name_scale * double(longest(names)) + 12);
  const double left = name_pixels + 45, top = 60, bottom = top + grid;
  viewport_pixels(canvas, left, left + grid, top, bottom);
  const double dn = double(n);
  plwind(0, dn, 0, dn);
  for (int64_t t = 0; t < n; ++t) {
    int64_t row_total = 0;
    for (int64_t p = 0; p < n; ++p) row_total += m.count(t, p);
    const double y0 = dn - double(t) - 1;
    for (int64_t p = 0; p < n; ++p) {
      if (row_total == 0) plcol0(kMissing);
      else plcol1(double(m.count(t, p)) / double(row_total));
      fill_rectangle(double(p), double(p) + 1, y0, y0 + 1);
    }
    if (row_total > 0 && n <= kConfusionValuesUpTo) {
      plschr(0, canvas.text() * std::min(1.0, 10.0 / double(n)));
      for (int64_t p = 0; p < n; ++p) {
        const double v = double(m.count(t, p)) / double(row_total);
        plcol0(v > 0.55 ? kWhiteInk : kInk);
        plptex(double(p) + 0.5, y0 + 0.5, 1, 0, 0.5, fixed(v, 2).c_str());
      }
      plschr(0, canvas.text());
    }
  }
  plcol0(kInk);
  plbox("bc", 0, 0, "bc", 0, 0);
  plschr(0, canvas.text() * name_scale);
  for (int64_t i = 0; i < n; ++i) {
    const double position = (double(i) + 0.5) / dn;
    plmtex("lv", 0.6, 1 - position, 1.0, checked_name(names, i).c_str());  // rows, top down
    plmtex("bv", 0.6, position, 1.0, checked_name(names, i).c_str());      // columns, left to right
  }
  plschr(0, canvas.text());
  const double name_chars = name_pixels / canvas.char_pixels();
  plmtex("l", name_chars + 1.0, 0.5, 0.5, "true class");
  plmtex("b", name_chars + 1.6, 0.5, 0.5, "predicted class");
  plmtex("t", 1.5, 0.5, 0.5, "Confusion matrix (each row: share of the true class's pixels)");

  // The colour scale, right of the grid.
  viewport_pixels(canvas, left + grid + 30, left + grid + 55, top, bottom);
  plwind(0, 1, 0, 1);
  for (int i = 0; i < 100; ++i) {
    plcol1((i + 0.5) / 100.0);
    fill_rectangle(0, 1, i / 100.0, (i + 1) / 100.0);
  }
  plcol0(kInk);
  plbox("bc", 0, 0, "bcmstv", 0.2, 2);
  plmtex("r", 4.0, 0.5, 0.5, "share of the row");
  write_png(png, canvas.finish());
}

cv::Size class_iou_chart_size(int64_t num_classes) {
  return {900, static_cast<int>(std::max<int64_t>(320, 150 + 30 * std::max<int64_t>(num_classes, 1)))};
}

void draw_class_iou(const ConfusionMatrix& m, const std::vector<std::string>& names, const std::filesystem::path& png) {
  check_names(m, names, png);
  const int64_t n = m.num_classes();
  const auto iou = m.class_iou();
  Canvas canvas(class_iou_chart_size(n), png);
  const double name_pixels = std::min(300.0, kCharWidth * canvas.char_pixels() * double(longest(names)) + 12);
  const double left = name_pixels + 20, right = canvas.width() - 40;
  viewport_pixels(canvas, left, right, 80, canvas.height() - 70);
  const double dn = double(n);
  plwind(0, 1, 0, dn);
  plcol0(kGrid);
  plbox("g", 0.1, 0, "", 0, 0);
  // The mean first: the bars and their values go over it.
  const double mean = m.mean_iou();
  if (std::isfinite(mean)) {
    plcol0(kMeanLine);
    plwidth(2.0);
    pllsty(2);  // dashed
    PLFLT x[] = {mean, mean}, y[] = {0, dn};
    plline(2, x, y);
    pllsty(1);
    plwidth(1.0);
    plmtex("t", 0.8, mean, 0.5, ("mIoU " + fixed(mean, 3)).c_str());
  }
  for (int64_t i = 0; i < n; ++i) {
    const double v = iou[size_t(i)], y = dn - double(i) - 1;
    if (std::isfinite(v)) {
      plcol0(kBar);
      fill_rectangle(0, v, y + 0.15, y + 0.85);
      // The value at the bar's end: outside it, or inside (white) when the bar reaches the right.
      const bool inside = v > 0.88;
      plcol0(inside ? kWhiteInk : kInk);
      plptex(inside ? v - 0.01 : v + 0.01, y + 0.5, 1, 0, inside ? 1.0 : 0.0,
             fixed(v, 3).c_str());
    } else {
      plcol0(kMutedInk);
      plptex(0.01, y + 0.5, 1, 0, 0.0, "n/a (neither in the truth nor predicted)");
    }
    plcol0(kInk);
    plmtex("lv", 0.6, 1 - (double(i) + 0.5) / dn, 1.0, names[size_t(i)].c_str());
  }
  plcol0(kInk);
  plbox("bcnst", 0.1, 2, "bc", 0, 0);
  pllab("IoU (intersection over union)", "", "");
  plmtex("t", 3.0, 0.5, 0.5, "IoU per class");
  write_png(png, canvas.finish());
}

}  // namespace segnet

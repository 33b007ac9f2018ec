#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/files.h>

#include "common/format_number.h"

#include <opencv2/imgcodecs.hpp>
#include <png.h>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <thread>

namespace segnet {

std::vector<ListLine> read_list_lines(const fs::path& list_file) {
  std::ifstream in = open_to_read(list_file, "list file");
  std::vector<ListLine> lines;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::stringstream ss(line);
    ListLine parsed{number, {}};
    for (std::string field; ss >> field;) parsed.fields.push_back(field);
    if (!parsed.fields.empty() && parsed.fields[0][0] != '#') lines.push_back(std::move(parsed));
  }
  if (lines.empty()) throw Error(list_file, "list is empty");
  return lines;
}

std::vector<SamplePaths> read_list(const fs::path& dir, const fs::path& list_file) {
  std::vector<SamplePaths> samples;
  for (const auto& line : read_list_lines(list_file)) {
    if (line.fields.size() != 2)
      throw Error(list_file, "line " + std::to_string(line.number) + ": expected 'IMAGE LABEL', got " +
                                 std::to_string(line.fields.size()) + " fields");
    samples.push_back({dir / line.fields[0], dir / line.fields[1]});
  }
  return samples;
}

static bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tif" || ext == ".tiff";
}

std::vector<SamplePaths> pair_folders(const fs::path& dir) {
  const fs::path images = dir / "images", masks = dir / "masks";
  if (!fs::is_directory(images) || !fs::is_directory(masks))
    throw Error(dir, "expected a list file or the folders images/ and masks/");
  std::map<std::string, fs::path> mask_by_stem;
  for (const auto& e : fs::directory_iterator(masks))
    if (is_image_file(e.path())) mask_by_stem[e.path().stem().string()] = e.path();
  std::vector<SamplePaths> samples;
  for (const auto& e : fs::directory_iterator(images)) {
    if (!is_image_file(e.path())) continue;
    const auto m = mask_by_stem.find(e.path().stem().string());
    if (m == mask_by_stem.end()) throw Error(e.path(), "no mask with the same name in " + masks.string());
    samples.push_back({e.path(), m->second});
  }
  std::sort(samples.begin(), samples.end(), [](auto& a, auto& b) { return a.image < b.image; });
  if (samples.empty()) throw Error(images, "no images");
  return samples;
}

std::vector<SamplePaths> find_samples(const fs::path& dir, const std::string& list) {
  if (!fs::is_directory(dir)) throw Error(dir, "dataset directory not found");
  const fs::path list_file = fs::path(list).is_absolute() ? fs::path(list) : dir / list;
  if (fs::exists(list_file)) return read_list(dir, list_file);
  if (fs::is_directory(dir / "images")) return pair_folders(dir);
  throw Error(list_file, "list file not found (and no images/ masks/ folders in " + dir.string() + ")");
}

// A PNG's chunks must run, length by length, to an IEND chunk. Checking that first keeps truncated
// files away from libpng, which would print its own complaint besides our error.
static bool png_is_truncated(const std::vector<uint8_t>& bytes) {
  static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() < 8 || !std::equal(signature, signature + 8, bytes.begin())) return false;  // not a PNG
  for (size_t at = 8; at + 12 <= bytes.size();) {
    const uint64_t length = (uint64_t(bytes[at]) << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3];
    if (std::equal(bytes.begin() + at + 4, bytes.begin() + at + 8, "IEND")) return false;
    at += 12 + length;
  }
  return true;
}

std::vector<fs::path> list_images(const std::vector<fs::path>& inputs) {
  std::vector<fs::path> files;
  for (const auto& input : inputs) {
    if (fs::is_directory(input)) {
      std::vector<fs::path> found;
      for (const auto& e : fs::directory_iterator(input))
        if (is_image_file(e.path())) found.push_back(e.path());
      std::sort(found.begin(), found.end());
      if (found.empty()) throw Error(input, "folder holds no images");
      files.insert(files.end(), found.begin(), found.end());
    } else {
      if (!fs::exists(input)) throw Error(input, "no such file");
      files.push_back(input);
    }
  }
  return files;
}

std::vector<SamplePaths> find_unlabeled(const fs::path& dir, const fs::path& folder_or_list) {
  std::vector<SamplePaths> samples;
  const fs::path path = folder_or_list.is_absolute() || fs::exists(folder_or_list) ? folder_or_list : dir / folder_or_list;
  if (fs::is_directory(path)) {
    for (const auto& image : list_images({path})) samples.push_back({image, {}});
    return samples;
  }
  if (!fs::is_regular_file(path)) throw Error(path, "no such folder or list of unlabelled images");
  for (const auto& line : read_list_lines(path)) samples.push_back({dir / line.fields[0], {}});
  return samples;
}

static std::vector<uint8_t> read_bytes(const fs::path& file) {
  if (!fs::is_regular_file(file)) throw Error(file, "no such file");
  std::ifstream in(file, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) throw Error(file, "cannot read");
  if (png_is_truncated(bytes)) throw Error(file, "truncated PNG");
  return bytes;
}

static cv::Mat decode(const fs::path& file, const std::vector<uint8_t>& bytes, int flags) {
  cv::Mat m;
  try {
    m = cv::imdecode(bytes, flags);
  } catch (const cv::Exception&) {
  }
  if (m.empty()) throw Error(file, "cannot decode image (corrupt, truncated or not an image)");
  return m;
}

std::string to_string(const InputRange& range) { return format_number(range.low) + ".." + format_number(range.high); }

void validate(const InputRange& range) {
  if (!(std::isfinite(range.low) && std::isfinite(range.high) && range.low < range.high))
    throw OptionError("input_range", "must be LOW < HIGH, finite, not " + to_string(range));
}

cv::Mat to_8bit(const cv::Mat& image, const InputRange& range) {
  const double scale = 255.0 / (range.high - range.low);
  cv::Mat out;
  image.convertTo(out, CV_8U, scale, -range.low * scale);  // rounds, and saturates outside the range
  return out;
}

cv::Mat read_image(const fs::path& file, const std::optional<InputRange>& range) {
  // ANYDEPTH keeps 16-bit values, which IMREAD_COLOR alone would cut to their top 8 bits.
  cv::Mat bgr = decode(file, read_bytes(file), cv::IMREAD_COLOR | cv::IMREAD_ANYDEPTH), rgb;
  // OpenCV 4.6 decodes float TIFFs wrongly (3-channel values changed, 1-channel ones refused).
  if (bgr.depth() != CV_8U && bgr.depth() != CV_16U)
    throw Error(file, "neither an 8-bit nor a 16-bit image (float or 32-bit values); convert it to 16-bit PNG or TIFF");
  if (bgr.depth() == CV_8U && range)
    throw Error(file, "8-bit image, but its input range " + to_string(*range) + " is for 16-bit images");
  if (bgr.depth() == CV_16U) {
    if (!range) {
      double low = 0, high = 0;
      cv::minMaxLoc(bgr.reshape(1), &low, &high);
      throw Error(file, "16-bit image (values " + to_string(InputRange{low, high}) +
                            "): reading it needs an input range, the stored values that become black and white");
    }
    bgr = to_8bit(bgr, *range);
  }
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

namespace {

// PNG colour type 3: the pixels are indices into a palette. Its IHDR chunk comes first, at byte 8.
bool is_palette_png(const std::vector<uint8_t>& bytes) {
  return bytes.size() > 25 && bytes[1] == 'P' && bytes[2] == 'N' && bytes[3] == 'G' && bytes[25] == 3;
}

struct PngRead {
  const std::vector<uint8_t>& bytes;
  size_t at = 8;  // after the signature
  std::string error;
};

void png_read_bytes(png_structp png, png_bytep out, png_size_t count) {
  auto* read = static_cast<PngRead*>(png_get_io_ptr(png));
  if (read->at + count > read->bytes.size()) png_error(png, "file ends early");
  std::memcpy(out, read->bytes.data() + read->at, count);
  read->at += count;
}

// A palette PNG's indices as stored (OpenCV's decoder turns them into the palette's colours).
// libpng reports errors by longjmp: every object with a destructor exists before setjmp.
cv::Mat decode_palette_indices(const fs::path& file, const std::vector<uint8_t>& bytes) {
  const auto be32 = [&](size_t at) { return int(bytes[at]) << 24 | int(bytes[at + 1]) << 16 | int(bytes[at + 2]) << 8 | int(bytes[at + 3]); };
  const int width = be32(16), height = be32(20);
  if (width < 1 || height < 1 || int64_t(width) * height > (int64_t(1) << 31)) throw Error(file, "PNG has an impossible size");
  cv::Mat indices(height, width, CV_8UC1);
  std::vector<png_bytep> rows(static_cast<size_t>(height));
  for (int r = 0; r < height; ++r) rows[r] = indices.ptr<png_byte>(r);
  PngRead read{bytes, 8, {}};
  png_structp png = png_create_read_struct(
      PNG_LIBPNG_VER_STRING, &read,
      [](png_structp p, png_const_charp message) {
        static_cast<PngRead*>(png_get_error_ptr(p))->error = message;
        png_longjmp(p, 1);
      },
      [](png_structp, png_const_charp) {});
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    throw Error(file, "cannot decode PNG: out of memory");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(file, "cannot decode palette PNG: " + read.error);
  }
  png_set_sig_bytes(png, 8);
  png_set_read_fn(png, &read, png_read_bytes);
  png_read_info(png, info);
  png_set_packing(png);  // 1-, 2- and 4-bit indices: one byte each
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return indices;
}

std::string pixel_at(int row, int col) { return "pixel (x " + std::to_string(col) + ", y " + std::to_string(row) + ")"; }

// Colour masks: each pixel's colour is a class's or a void colour.
cv::Mat colors_to_ids(const fs::path& file, const cv::Mat& bgr, const LabelSpec& spec) {
  std::map<uint32_t, uint8_t> id_of;
  const auto key = [](uint8_t r, uint8_t g, uint8_t b) { return uint32_t(r) << 16 | uint32_t(g) << 8 | b; };
  for (const Rgb& c : spec.void_colors) id_of[key(c[0], c[1], c[2])] = static_cast<uint8_t>(kIgnoreLabel);
  for (size_t id = 0; id < spec.class_colors.size(); ++id) {
    const Rgb& c = spec.class_colors[id];
    id_of[key(c[0], c[1], c[2])] = static_cast<uint8_t>(id);
  }
  cv::Mat ids(bgr.size(), CV_8UC1);
  for (int r = 0; r < bgr.rows; ++r) {
    const cv::Vec3b* p = bgr.ptr<cv::Vec3b>(r);
    uint8_t* out = ids.ptr<uint8_t>(r);
    uint32_t last_key = ~0u;
    uint8_t last_id = 0;
    for (int c = 0; c < bgr.cols; ++c) {
      const uint32_t k = key(p[c][2], p[c][1], p[c][0]);
      if (k != last_key) {
        const auto found = id_of.find(k);
        if (found == id_of.end())
          throw Error(file, "colour (" + std::to_string(p[c][2]) + ", " + std::to_string(p[c][1]) + ", " +
                                std::to_string(p[c][0]) + ") at " + pixel_at(r, c) + " is neither a class colour nor void");
        last_key = k, last_id = found->second;
      }
      out[c] = last_id;
    }
  }
  return ids;
}

// Stored ids -> class ids (kIgnoreLabel for void), by a table over every value the image can hold.
cv::Mat map_stored_ids(const fs::path& file, const cv::Mat& raw, const LabelSpec& spec) {
  const int values = raw.depth() == CV_16U ? 65536 : 256;
  constexpr int16_t kNotALabel = -1;
  std::vector<int16_t> table(values, kNotALabel);
  for (int v = 0; v < values; ++v) {
    if (!spec.value_map.empty()) {
      if (const auto m = spec.value_map.find(v); m != spec.value_map.end()) table[v] = static_cast<int16_t>(m->second);
    } else if (spec.binary && (v == 0 || v == 1 || v == 255)) {
      table[v] = v == 0 ? 0 : 1;
    } else if (!spec.binary && v < spec.num_classes) {
      table[v] = static_cast<int16_t>(v);
    } else if (std::count(spec.void_labels.begin(), spec.void_labels.end(), v)) {
      table[v] = static_cast<int16_t>(kIgnoreLabel);
    }
  }
  // Every value the image holds must mean something; the first that does not is reported with its pixel.
  const auto report = [&](int v) {
    cv::Mat where;
    cv::findNonZero(raw == v, where);
    const cv::Point at = where.at<cv::Point>(0);
    const std::string expected = !spec.value_map.empty() ? "it is not in the label map"
                                 : spec.binary ? "neither a class (0, or 1/255) nor void"
                                               : "neither a class (0.." + std::to_string(spec.num_classes - 1) + ") nor void";
    throw Error(file, "label value " + std::to_string(v) + " at " + pixel_at(at.y, at.x) + ": " + expected);
  };
  cv::Mat ids(raw.size(), CV_8UC1);
  if (raw.depth() == CV_8U) {
    int64_t histogram[256] = {0};
    for (int r = 0; r < raw.rows; ++r)
      for (const uint8_t* p = raw.ptr<uint8_t>(r); p != raw.ptr<uint8_t>(r) + raw.cols; ++p) ++histogram[*p];
    cv::Mat lut(1, 256, CV_8U);
    for (int v = 0; v < 256; ++v) {
      if (histogram[v] && table[v] == kNotALabel) report(v);
      lut.at<uint8_t>(v) = static_cast<uint8_t>(table[v]);
    }
    cv::LUT(raw, lut, ids);
    return ids;
  }
  for (int r = 0; r < raw.rows; ++r) {
    const uint16_t* in = raw.ptr<uint16_t>(r);
    uint8_t* out = ids.ptr<uint8_t>(r);
    for (int c = 0; c < raw.cols; ++c) {
      if (table[in[c]] == kNotALabel) report(in[c]);
      out[c] = static_cast<uint8_t>(table[in[c]]);
    }
  }
  return ids;
}

}  // namespace

cv::Mat read_label(const fs::path& file, const LabelSpec& spec) {
  const std::vector<uint8_t> bytes = read_bytes(file);
  if (spec.format == LabelFormat::Color) return colors_to_ids(file, decode(file, bytes, cv::IMREAD_COLOR), spec);
  cv::Mat raw = is_palette_png(bytes) ? decode_palette_indices(file, bytes) : decode(file, bytes, cv::IMREAD_UNCHANGED);
  if (raw.channels() == 3 || raw.channels() == 4) {
    // Grey masks saved as RGB are fine; real colours mean a colour mask where ids were expected.
    std::vector<cv::Mat> ch;
    cv::split(raw, ch);
    if (cv::countNonZero(ch[0] != ch[1]) || cv::countNonZero(ch[0] != ch[2]))
      throw Error(file, "label image has colours; expected class ids (a colour mask? the colour label format reads those)");
    raw = ch[0];
  }
  if (raw.channels() != 1) throw Error(file, "label image must have one channel");
  if (raw.depth() != CV_8U && raw.depth() != CV_16U) throw Error(file, "label image must be 8- or 16-bit integers");
  return map_stored_ids(file, raw, spec);
}

Sample read_sample(const SamplePaths& paths, const LabelSpec& spec, const std::optional<InputRange>& range) {
  cv::Mat image = read_image(paths.image, range);
  if (paths.label.empty()) return {image, cv::Mat(image.size(), CV_8UC1, cv::Scalar(kIgnoreLabel))};
  Sample s{image, read_label(paths.label, spec)};
  if (s.image.size() != s.label.size())
    throw Error(paths.label, "mask is " + std::to_string(s.label.rows) + "x" + std::to_string(s.label.cols) +
                                 " but its image " + paths.image.string() + " is " + std::to_string(s.image.rows) +
                                 "x" + std::to_string(s.image.cols));
  return s;
}

cv::Mat resize_image(const cv::Mat& rgb, Size2 size) {
  const cv::Size target(static_cast<int>(size.width), static_cast<int>(size.height));
  if (rgb.size() == target) return rgb;
  const bool shrinking = target.width <= rgb.cols && target.height <= rgb.rows;
  cv::Mat out;
  cv::resize(rgb, out, target, 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

Sample resize_sample(const Sample& sample, Size2 size) {
  Sample out{resize_image(sample.image, size), sample.label};
  if (out.label.rows != size.height || out.label.cols != size.width)
    cv::resize(sample.label, out.label, out.image.size(), 0, 0, cv::INTER_NEAREST);
  return out;
}

torch::Tensor label_tensor(const cv::Mat& ids) {
  TORCH_CHECK(ids.type() == CV_8UC1 && ids.isContinuous(), "label_tensor needs a continuous CV_8UC1 image");
  return torch::from_blob(ids.data, {ids.rows, ids.cols}, torch::kUInt8);
}

cv::Mat label_image(const torch::Tensor& ids) {
  const auto bytes = ids.to(torch::kCPU, torch::kUInt8).contiguous();
  return cv::Mat(static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), CV_8UC1, bytes.data_ptr<uint8_t>())
      .clone();
}

torch::Tensor image_to_tensor(const cv::Mat& rgb, const Normalization& norm) {
  const cv::Mat m = rgb.isContinuous() ? rgb : rgb.clone();
  auto t = torch::from_blob(m.data, {m.rows, m.cols, 3}, torch::kUInt8).permute({2, 0, 1}).to(torch::kFloat);
  return t.div_(255.f).sub_(channel_tensor(norm.mean)).div_(channel_tensor(norm.std)).contiguous();
}

torch::Tensor network_input(const cv::Mat& rgb, Size2 size, const Normalization& norm) {
  return image_to_tensor(resize_image(rgb, size), norm);
}

torch::Tensor channel_tensor(const std::array<float, 3>& values) {
  return torch::tensor({values[0], values[1], values[2]}).view({3, 1, 1});
}

namespace {
struct Accumulator {
  double sum[3] = {0, 0, 0}, sum_sq[3] = {0, 0, 0};
  int64_t pixels = 0;
  std::vector<int64_t> class_pixels, present_pixels;
};
}  // namespace

DatasetStatistics compute_statistics(const std::vector<SamplePaths>& samples, const LabelSpec& spec,
                                     const std::optional<InputRange>& range, Size2 size) {
  const size_t workers = std::min<size_t>(samples.size(), std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::future<Accumulator>> parts;
  for (size_t w = 0; w < workers; ++w)
    parts.push_back(std::async(std::launch::async, [&, w] {
      Accumulator a;
      a.class_pixels.assign(spec.num_classes, 0);
      a.present_pixels.assign(spec.num_classes, 0);
      for (size_t i = w; i < samples.size(); i += workers) {
        const Sample s = resize_sample(read_sample(samples[i], spec, range), size);
        cv::Scalar mean, sd;
        cv::meanStdDev(s.image, mean, sd);
        const int64_t n = int64_t(s.image.total());
        for (int c = 0; c < 3; ++c)
          a.sum[c] += mean[c] / 255.0 * n, a.sum_sq[c] += (sd[c] * sd[c] + mean[c] * mean[c]) / (255.0 * 255.0) * n;
        a.pixels += n;
        std::vector<int64_t> counts(256, 0);
        for (int r = 0; r < s.label.rows; ++r) {
          const uint8_t* p = s.label.ptr<uint8_t>(r);
          for (int c = 0; c < s.label.cols; ++c) ++counts[p[c]];
        }
        for (int64_t c = 0; c < spec.num_classes; ++c)
          if (counts[c]) a.class_pixels[c] += counts[c], a.present_pixels[c] += n;
      }
      return a;
    }));
  DatasetStatistics stats;
  stats.class_pixels.assign(spec.num_classes, 0);
  stats.present_pixels.assign(spec.num_classes, 0);
  double sum[3] = {0, 0, 0}, sum_sq[3] = {0, 0, 0};
  int64_t pixels = 0;
  for (auto& f : parts) {  // get() rethrows a worker's error
    const Accumulator a = f.get();
    for (int c = 0; c < 3; ++c) sum[c] += a.sum[c], sum_sq[c] += a.sum_sq[c];
    pixels += a.pixels;
    for (int64_t c = 0; c < spec.num_classes; ++c)
      stats.class_pixels[c] += a.class_pixels[c], stats.present_pixels[c] += a.present_pixels[c];
  }
  for (int c = 0; c < 3; ++c) {
    const double mean = sum[c] / pixels, var = sum_sq[c] / pixels - mean * mean;
    stats.norm.mean[c] = static_cast<float>(mean);
    stats.norm.std[c] = static_cast<float>(std::sqrt(std::max(var, 1e-6)));
  }
  return stats;
}

}  // namespace segnet

#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/metrics.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace segnet {

std::vector<float> median_frequency_weights(const std::vector<int64_t>& class_pixels,
                                            const std::vector<int64_t>& present_pixels) {
  std::vector<double> freq(class_pixels.size(), 0.0), present;
  for (size_t c = 0; c < class_pixels.size(); ++c)
    if (class_pixels[c] > 0) {
      freq[c] = double(class_pixels[c]) / double(present_pixels[c]);
      present.push_back(freq[c]);
    }
  std::vector<float> weights(class_pixels.size(), 0.f);
  if (present.empty()) return weights;
  std::sort(present.begin(), present.end());
  const size_t n = present.size();
  const double median = n % 2 ? present[n / 2] : 0.5 * (present[n / 2 - 1] + present[n / 2]);
  for (size_t c = 0; c < freq.size(); ++c)
    if (freq[c] > 0) weights[c] = static_cast<float>(median / freq[c]);
  return weights;
}

std::vector<float> read_class_weights(const std::filesystem::path& file) {
  std::ifstream in = open_to_read(file, "class weights file");
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  std::replace(s.begin(), s.end(), ',', ' ');
  std::stringstream ss(s);
  std::vector<float> weights;
  for (std::string token; ss >> token;) {
    try {
      size_t used = 0;
      const float w = std::stof(token, &used);
      if (used != token.size() || !(std::isfinite(w) && w >= 0)) throw std::invalid_argument(token);
      weights.push_back(w);
    } catch (const std::exception&) {
      throw Error(file, "'" + token + "' is not a finite class weight >= 0");
    }
  }
  if (weights.empty()) throw Error(file, "holds no class weights");
  return weights;
}

}  // namespace segnet

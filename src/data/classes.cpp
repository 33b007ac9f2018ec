#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/model.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace segnet {

static bool parse_int(const std::string& text, int64_t& value) {
  const size_t first = !text.empty() && text[0] == '-';
  if (text.size() == first || text.find_first_not_of("0123456789", first) != std::string::npos) return false;
  try {
    size_t used = 0;
    value = std::stoll(text, &used);
    return used == text.size();
  } catch (const std::exception&) {
    return false;
  }
}

static std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  const auto e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string to_string(Size2 size) { return std::to_string(size.height) + "x" + std::to_string(size.width); }

std::vector<ClassInfo> read_classes_csv(const fs::path& file) {
  std::ifstream in = open_to_read(file, "class list");
  std::vector<ClassInfo> classes;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields;
    std::stringstream ss(line);
    for (std::string f; std::getline(ss, f, ',');) fields.push_back(trim(f));
    int64_t id = 0;
    if (classes.empty() && !fields.empty() && !parse_int(fields[0], id)) continue;  // header
    int64_t rgb[3];
    const std::string where = "line " + std::to_string(line_no) + ": ";
    if (fields.size() != 5 || !parse_int(fields[0], id) || !parse_int(fields[2], rgb[0]) ||
        !parse_int(fields[3], rgb[1]) || !parse_int(fields[4], rgb[2]))
      throw Error(file, where + "expected id,name,r,g,b");
    if (id != static_cast<int64_t>(classes.size()))
      throw Error(file, where + "class id " + std::to_string(id) + " out of order (expected " +
                            std::to_string(classes.size()) + ")");
    for (int64_t c : rgb)
      if (c < 0 || c > 255) throw Error(file, where + "colour component " + std::to_string(c) + " not in 0..255");
    classes.push_back({fields[1], {uint8_t(rgb[0]), uint8_t(rgb[1]), uint8_t(rgb[2])}});
  }
  if (classes.empty()) throw Error(file, "no classes");
  if (static_cast<int64_t>(classes.size()) > kMaxClasses)
    throw Error(file, "too many classes (at most " + std::to_string(kMaxClasses) + ")");
  return classes;
}

void write_classes_csv(const fs::path& file, const std::vector<ClassInfo>& classes) {
  std::string text = "id,name,r,g,b\n";
  for (size_t i = 0; i < classes.size(); ++i)
    text += std::to_string(i) + "," + classes[i].name + "," + std::to_string(classes[i].rgb[0]) + "," +
            std::to_string(classes[i].rgb[1]) + "," + std::to_string(classes[i].rgb[2]) + "\n";
  write_text(file, text);
}

std::vector<ClassInfo> default_classes(int64_t count) {
  std::vector<ClassInfo> classes;
  for (int64_t i = 0; i < count; ++i) {
    // Hues spread by the golden angle stay distinct for any count.
    const double h = std::fmod(i * 137.508, 360.0) / 60.0, v = i % 2 ? 0.75 : 1.0, s = 0.8;
    const double c = v * s, x = c * (1 - std::fabs(std::fmod(h, 2.0) - 1)), m = v - c;
    double r = 0, g = 0, b = 0;
    switch (static_cast<int>(h)) {
      case 0: r = c, g = x; break;
      case 1: r = x, g = c; break;
      case 2: g = c, b = x; break;
      case 3: g = x, b = c; break;
      case 4: r = x, b = c; break;
      default: r = c, b = x; break;
    }
    classes.push_back({"class" + std::to_string(i),
                       {uint8_t(std::lround((r + m) * 255)), uint8_t(std::lround((g + m) * 255)),
                        uint8_t(std::lround((b + m) * 255))}});
  }
  return classes;
}

LabelSpec make_label_spec(int64_t num_classes, std::optional<int64_t> void_label) {
  if (num_classes < 1 || num_classes > kMaxClasses)
    throw OptionError("num_classes",
                      "must be in 1.." + std::to_string(kMaxClasses) + ", got " + std::to_string(num_classes));
  LabelSpec spec;
  spec.num_classes = num_classes;
  if (void_label == 0) {  // stored k + 1 is class k; 255 stays void
    spec.void_labels = {0, 255};
    spec.value_map = {{0, kIgnoreLabel}, {255, kIgnoreLabel}};
    for (int64_t k = 0; k < num_classes; ++k) spec.value_map[k + 1] = k;
  } else if (void_label) {
    if (*void_label < num_classes || *void_label > 255)
      throw OptionError("void_label", "must be 0 (classes stored from 1) or in " + std::to_string(num_classes) +
                                          "..255 (not a class id), got " + std::to_string(*void_label));
    spec.void_labels = {*void_label};
  } else {
    spec.void_labels = {num_classes, 255};
  }
  return spec;
}

std::optional<int64_t> LabelSpec::stored_void() const {
  if (format != LabelFormat::Ids) return std::nullopt;
  if (value_map.empty()) return void_labels.empty() ? std::nullopt : std::optional<int64_t>(void_labels[0]);
  for (const auto& [stored, id] : value_map)
    if (id == kIgnoreLabel) return stored;
  return std::nullopt;
}

std::map<int64_t, int64_t> read_label_map(const fs::path& file, int64_t num_classes) {
  std::ifstream in = open_to_read(file, "label map");
  std::map<int64_t, int64_t> map;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string stored, id, extra;
    if (!(fields >> stored)) continue;
    const std::string where = "line " + std::to_string(number) + ": ";
    if (!(fields >> id) || (fields >> extra)) throw Error(file, where + "expected 'STORED CLASS' (CLASS an id or void)");
    int64_t value = -1, class_id = kIgnoreLabel;
    if (!parse_int(stored, value) || value < 0 || value > 65535)
      throw Error(file, where + "stored value '" + stored + "' is not in 0..65535");
    if (id != "void" && (!parse_int(id, class_id) || class_id < 0 || class_id >= num_classes))
      throw Error(file, where + "class '" + id + "' is neither void nor a class id (0.." + std::to_string(num_classes - 1) + ")");
    if (!map.emplace(value, class_id).second) throw Error(file, where + "stored value " + stored + " is mapped twice");
  }
  if (map.empty()) throw Error(file, "label map is empty");
  return map;
}

LabelSpec make_binary_label_spec(std::optional<int64_t> void_label) {
  LabelSpec spec;
  spec.num_classes = 2;
  spec.binary = true;
  if (void_label) {
    if (*void_label < 2 || *void_label > 254)
      throw OptionError("void_label", "must be in 2..254 for binary masks, got " + std::to_string(*void_label));
    spec.void_labels = {*void_label};
  }
  return spec;
}

}  // namespace segnet

// What the charts are drawn from: a run's metrics.csv and eval's JSON.
#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/report.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

namespace segnet {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> fields;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, ',')) fields.push_back(field);
  if (!line.empty() && line.back() == ',') fields.emplace_back();
  for (auto& f : fields) {
    while (!f.empty() && (f.back() == '\r' || f.back() == ' ')) f.pop_back();
    while (!f.empty() && f.front() == ' ') f.erase(f.begin());
  }
  return fields;
}

// A number as training writes them ("nan" included); false for anything else.
bool parse_number(const std::string& text, double& value) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  value = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size() && errno != ERANGE;
}

}  // namespace

std::vector<EpochMetrics> read_metrics_csv(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) throw Error(file, "does not exist (not a training run folder?)");
  std::ifstream in = open_to_read(file, "metrics file");
  std::string line;
  if (!std::getline(in, line) || line.empty()) throw Error(file, "is empty: expected a header line of column names");
  const auto header = split_csv(line);
  const std::array<const char*, 5> wanted = {"epoch", "train_loss", "val_global_acc", "val_class_avg_acc", "val_miou"};
  std::array<size_t, 5> column{};
  for (size_t k = 0; k < wanted.size(); ++k) {
    const auto at = std::find(header.begin(), header.end(), wanted[k]);
    if (at == header.end())
      throw Error(file, std::string("line 1: no column '") + wanted[k] + "' (not a segnet metrics.csv?)");
    column[k] = static_cast<size_t>(at - header.begin());
  }
  const auto seconds_column = std::find(header.begin(), header.end(), "seconds");
  std::vector<EpochMetrics> rows;
  for (int line_no = 2; std::getline(in, line); ++line_no) {
    if (line.empty() || line == "\r") continue;
    const std::string where = "line " + std::to_string(line_no) + ": ";
    const auto fields = split_csv(line);
    if (fields.size() != header.size())
      throw Error(file, where + "expected " + std::to_string(header.size()) + " values, found " +
                            std::to_string(fields.size()) + " (truncated or garbled?)");
    double values[5];
    for (size_t k = 0; k < wanted.size(); ++k)
      if (!parse_number(fields[column[k]], values[k]))
        throw Error(file, where + "'" + fields[column[k]] + "' in column " + wanted[k] + " is not a number");
    if (values[0] != std::floor(values[0]) || !std::isfinite(values[0]))
      throw Error(file, where + "epoch '" + fields[column[0]] + "' is not a whole number");
    double seconds = NAN;
    if (seconds_column != header.end() && !parse_number(fields[seconds_column - header.begin()], seconds))
      throw Error(file, where + "'" + fields[seconds_column - header.begin()] + "' in column seconds is not a number");
    rows.push_back({static_cast<int64_t>(values[0]), values[1], values[2], values[3], values[4], seconds});
  }
  if (!in.eof()) throw Error(file, "cannot read");
  return rows;
}

EvalCharts eval_chart_paths(const fs::path& json) {
  const fs::path folder = json.parent_path();
  const std::string stem = json.stem().string();
  return {folder / (stem + "_confusion.png"), folder / (stem + "_class_iou.png")};
}

EvalCharts draw_eval_charts(const ConfusionMatrix& matrix, const std::vector<std::string>& class_names,
                            const fs::path& json) {
  const EvalCharts charts = eval_chart_paths(json);
  draw_confusion(matrix, class_names, charts.confusion);
  draw_class_iou(matrix, class_names, charts.class_iou);
  return charts;
}

namespace {

std::optional<nlohmann::json> read_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return std::nullopt;
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

}  // namespace

EvalCharts draw_eval_charts_from_json(const fs::path& json) {
  const auto j = read_json(json);
  if (!j) throw Error(json, "cannot read as JSON");
  if (!j->is_object() || !j->contains("confusion") || !(*j)["confusion"].is_array())
    throw Error(json, "holds no \"confusion\": not an evaluation's JSON");
  const auto& rows = (*j)["confusion"];
  const int64_t n = static_cast<int64_t>(rows.size());
  if (n < 1) throw Error(json, "\"confusion\" is empty");
  std::vector<int64_t> counts;
  for (const auto& row : rows) {
    if (!row.is_array() || static_cast<int64_t>(row.size()) != n)
      throw Error(json, "\"confusion\" is not a square matrix");
    for (const auto& v : row) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0) throw Error(json, "\"confusion\" holds a value that is not a count");
      counts.push_back(v.get<int64_t>());
    }
  }
  std::vector<std::string> names;
  if (j->contains("per_class") && (*j)["per_class"].is_array()) {
    for (const auto& c : (*j)["per_class"]) names.push_back(c.is_object() && c.contains("name") && c["name"].is_string()
                                                                  ? c["name"].get<std::string>()
                                                                  : "class" + std::to_string(names.size()));
  } else if (n == 2) {
    names = {"background", "foreground"};  // binary eval: class 1 is the foreground
  } else {
    for (int64_t i = 0; i < n; ++i) names.push_back("class" + std::to_string(i));
  }
  if (static_cast<int64_t>(names.size()) != n)
    throw Error(json, "\"per_class\" names " + std::to_string(names.size()) + " classes, \"confusion\" " +
                          std::to_string(n));
  return draw_eval_charts(ConfusionMatrix(n, std::move(counts)), names, json);
}

std::vector<fs::path> write_run_report(const fs::path& run) {
  std::error_code ec;
  if (!fs::is_directory(run, ec)) throw Error(run, fs::exists(run, ec) ? "is not a folder" : "no such folder");
  const fs::path csv = run / "metrics.csv";
  const auto rows = read_metrics_csv(csv);
  if (rows.empty()) throw Error(csv, "holds no epochs yet");
  std::vector<fs::path> written = {curves_path(run)};
  draw_training_curves(rows, written.front());
  std::vector<fs::path> jsons;
  for (const auto& entry : fs::directory_iterator(run)) {
    const fs::path& file = entry.path();
    // Hidden files are atomic writes' temporaries.
    if (!entry.is_regular_file() || file.extension() != ".json" || file.filename().string()[0] == '.') continue;
    const auto j = read_json(file);
    if (!j) throw Error(file, "is not valid JSON (cut short?)");
    if (j->is_object() && j->contains("confusion")) jsons.push_back(file);
  }
  std::sort(jsons.begin(), jsons.end());
  for (const auto& json : jsons) {
    const auto charts = draw_eval_charts_from_json(json);
    written.push_back(charts.confusion);
    written.push_back(charts.class_iou);
  }
  return written;
}

}  // namespace segnet

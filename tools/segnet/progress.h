#pragma once
// Progress of a long loop on stderr: one live line on a terminal, occasional plain lines otherwise.
#include <chrono>
#include <cstdint>
#include <string>

namespace segnet::cli {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled);
  // `done` of `total` steps (total 0: unknown); `status` is appended (e.g. "loss 0.52").
  void update(int64_t done, const std::string& status);
  // Replaces the live line by `summary`, or just clears it.
  void finish(const std::string& summary = "");

 private:
  std::string label_;
  int64_t total_;
  bool enabled_, terminal_;
  int64_t last_logged_ = 0;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace segnet::cli

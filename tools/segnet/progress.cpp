#include "progress.h"

#include <cstdio>
#include <unistd.h>

namespace segnet::cli {

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), terminal_(::isatty(2)),
      start_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t done, const std::string& status) {
  if (!enabled_) return;
  // Plain logs get about ten lines per loop, a terminal every step.
  // Plain logs of a loop of unknown length get a line every 100 steps.
  if (!terminal_ && done != total_ && (total_ > 0 ? (done - last_logged_) * 10 < total_ : done - last_logged_ < 100))
    return;
  last_logged_ = done;
  std::string eta;
  if (total_ > 0) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const int seconds = done ? static_cast<int>(elapsed / done * (total_ - done)) : 0;
    eta = "  ETA " + std::to_string(seconds / 60) + ":" + (seconds % 60 < 10 ? "0" : "") + std::to_string(seconds % 60);
  }
  const std::string count = std::to_string(done) + (total_ > 0 ? "/" + std::to_string(total_) : "");
  std::fprintf(stderr, "%s%s %s%s%s%s%s", terminal_ ? "\r\033[K" : "", label_.c_str(), count.c_str(),
               status.empty() ? "" : "  ", status.c_str(), eta.c_str(), terminal_ ? "" : "\n");
  std::fflush(stderr);
}

void Progress::finish(const std::string& summary) {
  if (!enabled_) return;
  if (summary.empty()) {
    if (terminal_) std::fprintf(stderr, "\r\033[K");
    return;
  }
  std::fprintf(stderr, "%s%s\n", terminal_ ? "\r\033[K" : "", summary.c_str());
}

}  // namespace segnet::cli

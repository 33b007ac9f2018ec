#include "progress.h"

#include <cstdio>
#include <unistd.h>

namespace segnet {

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), terminal_(::isatty(2)),
      start_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t done, const std::string& status) {
  if (!enabled_) return;
  // Plain logs get about ten lines per loop, a terminal every step.
  if (!terminal_ && done != total_ && (done - last_logged_) * 10 < total_) return;
  last_logged_ = done;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int eta = done ? static_cast<int>(elapsed / done * (total_ - done)) : 0;
  std::fprintf(stderr, "%s%s %lld/%lld  %s  ETA %d:%02d%s", terminal_ ? "\r\033[K" : "", label_.c_str(),
               static_cast<long long>(done), static_cast<long long>(total_), status.c_str(), eta / 60, eta % 60,
               terminal_ ? "" : "\n");
  std::fflush(stderr);
}

void Progress::finish(const std::string& summary) {
  if (!enabled_) return;
  std::fprintf(stderr, "%s%s\n", terminal_ ? "\r\033[K" : "", summary.c_str());
}

}  // namespace segnet

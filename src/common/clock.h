#pragma once
// Wall-clock seconds, for the rates the library reports.
#include <chrono>

namespace segnet {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace segnet

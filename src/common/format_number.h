#pragma once
// Numbers in messages and tables as people write them (0.25, 1e-05, 2): six significant digits.
#include <sstream>
#include <string>

namespace segnet {

inline std::string format_number(double value) {
  std::ostringstream s;
  s << value;
  return s.str();
}

}  // namespace segnet

#pragma once
// Independent reference values from /usr/bin/python3 (numpy, PyTorch), where it has the modules.
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace segnet::test {

// Whether /usr/bin/python3 imports `module`.
inline bool python_has(const std::string& module) {
  return std::system(("/usr/bin/python3 -c 'import " + module + "' >/dev/null 2>&1").c_str()) == 0;
}

// What `script` (Python source, without single quotes) prints; nullopt when it fails.
inline std::optional<std::string> python_output(const std::string& script) {
  FILE* pipe = ::popen(("/usr/bin/python3 -c '" + script + "' 2>/dev/null").c_str(), "r");
  if (!pipe) return std::nullopt;
  std::string out;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
  if (::pclose(pipe) != 0) return std::nullopt;
  return out;
}

// A Python list literal of `values`, exactly (17 significant digits).
template <class T>
std::string python_list(const std::vector<T>& values) {
  std::ostringstream s;
  s.precision(17);
  s << "[";
  for (size_t i = 0; i < values.size(); ++i) s << (i ? ", " : "") << values[i];
  s << "]";
  return s.str();
}

}  // namespace segnet::test

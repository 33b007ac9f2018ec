#pragma once
// Errors a user can act on: one line that names the file (or option) and the problem.
#include <filesystem>
#include <stdexcept>
#include <string>

namespace segnet {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  Error(const std::filesystem::path& file, const std::string& problem)
      : std::runtime_error(file.string() + ": " + problem) {}
};

}  // namespace segnet

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

// A bad value of an option of the API. `option` is the option's name in its options struct (e.g.
// "epochs", "pseudo.threshold"), so that a front end can say which of its own settings it came from;
// `problem` is said in the domain's terms ("must be at least 1").
class OptionError : public Error {
 public:
  OptionError(std::string option, std::string problem)
      : Error(option + " " + problem), option_(std::move(option)), problem_(std::move(problem)) {}
  const std::string& option() const { return option_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string option_, problem_;
};

}  // namespace segnet

#pragma once
// Running the real `segnet` program (SEGNET_CLI) from tests, and reading what it wrote.
#include "expect_error.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace segnet::test {

// A path as one shell word.
inline std::string quote(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

struct CliResult {
  int status = -1;  // exit status; -1 when the process did not exit normally
  std::string out, err;
};

// Runs `segnet ARGS`, capturing stdout and stderr through files in `scratch`.
inline CliResult segnet_cli(const std::string& args, const std::filesystem::path& scratch) {
  static int calls = 0;
  const std::string n = std::to_string(++calls);
  const std::filesystem::path out = scratch / ("cli" + n + ".stdout"), err = scratch / ("cli" + n + ".stderr");
  const int raw = std::system((quote(SEGNET_CLI) + " " + args + " >" + quote(out) + " 2>" + quote(err)).c_str());
  return {raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(out), slurp(err)};
}

// A failed run whose stderr is the one line "segnet: error: ..." naming `subject`.
inline ::testing::AssertionResult FailsWithOneLineNaming(const CliResult& r, const std::string& subject) {
  if (r.status == 0) return ::testing::AssertionFailure() << "exit status 0";
  if (r.err.rfind("segnet: error: ", 0) != 0 || r.err.find('\n') + 1 != r.err.size())
    return ::testing::AssertionFailure() << "stderr is not one error line:\n" << r.err;
  if (!contains(r.err, subject)) return ::testing::AssertionFailure() << "error does not name '" << subject << "':\n" << r.err;
  return ::testing::AssertionSuccess();
}

}  // namespace segnet::test

#pragma once
// A fresh folder for each test, removed when the test ends, and a file read back whole.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>

namespace segnet::test {

inline std::filesystem::path unique_temp_dir(std::string name) {
  std::replace(name.begin(), name.end(), '/', '_');  // parameterised test names hold slashes
  return std::filesystem::temp_directory_path() / ("segnet_test_" + std::to_string(::getpid()) + "_" + name);
}

struct TempDir {
  std::filesystem::path path =
      unique_temp_dir(std::string(::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name()) + "_" +
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
};

inline std::string slurp(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace segnet::test

#pragma once
// The message of a segnet::Error, for tests that check what an error names.
#include <segnet/error.h>

#include <gtest/gtest.h>

#include <string>

namespace segnet::test {

// The message of the segnet::Error that `f` throws; a test failure when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a segnet::Error";
  return "";
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace segnet::test

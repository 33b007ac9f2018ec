#pragma once
// A GoogleTest parameter name from readable text: what is not a letter or digit becomes '_'.
#include <cctype>
#include <string>

inline std::string test_name(std::string text) {
  for (auto& c : text)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return text;
}

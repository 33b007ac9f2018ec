#pragma once
// An optional InputRange as JSON, [low, high] or null, as config.json and checkpoints hold it.
#include <segnet/data.h>
#include <segnet/error.h>

#include <nlohmann/json.hpp>

#include <optional>

namespace segnet {

inline nlohmann::json input_range_json(const std::optional<InputRange>& range) {
  return range ? nlohmann::json({range->low, range->high}) : nlohmann::json(nullptr);
}

// Null or absent: none. Anything but two numbers LOW < HIGH is an OptionError (input_range).
inline std::optional<InputRange> input_range_from_json(const nlohmann::json& value) {
  if (value.is_null()) return std::nullopt;
  if (!value.is_array() || value.size() != 2 || !value[0].is_number() || !value[1].is_number())
    throw OptionError("input_range", "must be [low, high] or null, not " + value.dump());
  const InputRange range{value[0].get<double>(), value[1].get<double>()};
  validate(range);
  return range;
}

}  // namespace segnet

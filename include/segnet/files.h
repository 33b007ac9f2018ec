#pragma once
// Writing files so that readers see the old content or the new, never a half-written mix.
#include <filesystem>
#include <functional>
#include <string>

namespace segnet {

// Calls `write(temporary_path)`, then renames the temporary over `file` (creating its folder).
// On failure the temporary is removed, `file` is untouched, and the error propagates.
void write_atomically(const std::filesystem::path& file, const std::function<void(const std::filesystem::path&)>& write);
void write_text(const std::filesystem::path& file, const std::string& text);

}  // namespace segnet

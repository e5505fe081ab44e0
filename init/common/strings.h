#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace keel {

std::vector<std::string> split(std::string_view s, char sep);
std::string_view trim(std::string_view s);
bool starts_with(std::string_view s, std::string_view prefix);
std::string join(const std::vector<std::string>& parts, std::string_view sep);
// Edit distance, for "did you mean" suggestions.
size_t edit_distance(std::string_view a, std::string_view b);
// Closest candidate within distance 2 (or 1/3 of the length), else empty.
std::string closest(std::string_view word, const std::vector<std::string>& candidates);

} // namespace keel

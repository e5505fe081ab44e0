#include "common/sizes.h"

#include <charconv>
#include <cstdint>
#include <string>

namespace keel {

Result<int64_t> parse_size(std::string_view text) {
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (end == text.data()) return plain_error("expected a size like 64M");
    std::string_view unit = text.substr(static_cast<size_t>(end - text.data()));
    int shift = 0;
    if (unit == "k" || unit == "K")
        shift = 10;
    else if (unit == "m" || unit == "M")
        shift = 20;
    else if (unit == "g" || unit == "G")
        shift = 30;
    else if (!unit.empty() && unit != "b" && unit != "B")
        return plain_error("unknown size unit '" + std::string(unit) + "' (use K, M or G)");
    // The digits alone may not fit, nor the value once scaled.
    if (ec == std::errc::result_out_of_range || v > (uint64_t(INT64_MAX) >> shift))
        return plain_error("'" + std::string(text) + "' is too large");
    return int64_t(v << shift);
}

std::string format_size(int64_t bytes) {
    if (bytes % (1 << 30) == 0) return std::to_string(bytes >> 30) + "G";
    if (bytes % (1 << 20) == 0) return std::to_string(bytes >> 20) + "M";
    if (bytes % (1 << 10) == 0) return std::to_string(bytes >> 10) + "K";
    return std::to_string(bytes);
}

} // namespace keel

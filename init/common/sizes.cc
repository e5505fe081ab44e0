#include "common/sizes.h"

#include <cctype>
#include <string>

namespace keel {

Result<int64_t> parse_size(std::string_view text) {
    size_t digits = 0;
    while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits])))
        ++digits;
    // 15 digits and a G still fit in 63 bits.
    if (digits == 0 || digits > 15) return plain_error("expected a size like 64M");
    int64_t v = std::stoll(std::string(text.substr(0, digits)));
    std::string_view unit = text.substr(digits);
    if (unit.empty() || unit == "b" || unit == "B") return v;
    if (unit == "k" || unit == "K") return v << 10;
    if (unit == "m" || unit == "M") return v << 20;
    if (unit == "g" || unit == "G") return v << 30;
    return plain_error("unknown size unit '" + std::string(unit) + "' (use K, M or G)");
}

std::string format_size(int64_t bytes) {
    if (bytes % (1 << 30) == 0) return std::to_string(bytes >> 30) + "G";
    if (bytes % (1 << 20) == 0) return std::to_string(bytes >> 20) + "M";
    if (bytes % (1 << 10) == 0) return std::to_string(bytes >> 10) + "K";
    return std::to_string(bytes);
}

} // namespace keel

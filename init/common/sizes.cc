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

} // namespace keel

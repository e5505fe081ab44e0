// Sizes as people write them: "512M", "1G", "100k", "4096". One parser for `keel run
// --memory` and a service's resources.memory.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"

namespace keel {

// Bytes: digits, then nothing, b/B, k/K (KiB), m/M (MiB) or g/G (GiB). The error says what
// was wrong: "expected a size like 64M" or "unknown size unit 'x' (use K, M or G)".
Result<int64_t> parse_size(std::string_view text);

// The other way, as a service file would say it: the largest unit that divides exactly
// ("64M", "1G", "1536K", "1000"), so parse_size(format_size(n)) == n.
std::string format_size(int64_t bytes);

} // namespace keel

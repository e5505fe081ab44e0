// Exponential backoff between restarts: one rule for keeld's services and PID 1's keeld.
#pragma once

#include <algorithm>
#include <cstdint>

namespace keel {

// The delay before attempt number `attempt` (1-based) of a run of failures: min_ms, then
// doubling, never above max_ms. Doubling stops at the cap, so no attempt count overflows.
constexpr int64_t backoff_delay(int attempt, int64_t min_ms, int64_t max_ms) noexcept {
    int64_t delay = min_ms;
    for (int i = 1; i < attempt && delay < max_ms; ++i)
        delay *= 2;
    return std::min(delay, max_ms);
}

} // namespace keel

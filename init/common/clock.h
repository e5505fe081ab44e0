// The one clock the supervisors and the CLI measure intervals with: monotonic, so a clock set
// by NTP or by hand neither fires every timer at once nor stalls them.
#pragma once

#include <time.h>

#include <cstdint>

namespace keel {

// Milliseconds on CLOCK_MONOTONIC (since boot; only differences mean anything).
inline int64_t now_ms() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Microseconds on the same clock, for timing short steps.
inline int64_t now_us() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

} // namespace keel

// Console logging for the runtime and its daemons: "keel: message" on stderr.
#pragma once

#include <fmt/format.h>

namespace keel::log {

void write_line(const char* level, const std::string& msg) noexcept;
void set_prefix(const char* prefix) noexcept;
void set_debug(bool on) noexcept;
// Quiet: info lines are dropped (warnings and errors still print). keeld goes quiet once the
// boot is done, so a console shell is not written over; keel.debug keeps everything.
void set_quiet(bool on) noexcept;
bool debug_enabled() noexcept;

template <class... Args> void info(fmt::format_string<Args...> f, Args&&... a) {
    write_line(nullptr, fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args> void warn(fmt::format_string<Args...> f, Args&&... a) {
    write_line("warning", fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args> void error(fmt::format_string<Args...> f, Args&&... a) {
    write_line("error", fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args> void debug(fmt::format_string<Args...> f, Args&&... a) {
    if (debug_enabled()) write_line("debug", fmt::format(f, std::forward<Args>(a)...));
}

} // namespace keel::log

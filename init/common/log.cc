#include "common/log.h"

#include <sys/uio.h>
#include <unistd.h>

namespace keel::log {

namespace {
const char* g_prefix = "keel";
bool g_debug = false;
bool g_quiet = false;
} // namespace

void set_prefix(const char* prefix) noexcept {
    g_prefix = prefix;
}
void set_debug(bool on) noexcept {
    g_debug = on;
}
bool debug_enabled() noexcept {
    return g_debug;
}
void set_quiet(bool on) noexcept {
    g_quiet = on;
}

void write_line(const char* level, const std::string& msg) noexcept {
    if (!level && g_quiet && !g_debug) return;
    // One writev per line, so lines from concurrent processes do not interleave.
    std::string head = std::string(g_prefix) + ": ";
    if (level) head += std::string(level) + ": ";
    iovec iov[3] = {{head.data(), head.size()},
                    {const_cast<char*>(msg.data()), msg.size()},
                    {const_cast<char*>("\n"), 1}};
    ssize_t r = ::writev(STDERR_FILENO, iov, 3);
    (void)r;
}

} // namespace keel::log

#include "common/signals.h"

#include <signal.h>
#include <string.h>

#include <cctype>

namespace keel {

int signal_number(std::string_view name) {
    if (name.empty()) return -1;
    if (name.find_first_not_of("0123456789") == std::string_view::npos) {
        if (name.size() > 3) return -1;
        int n = std::stoi(std::string(name));
        return n > 0 && n < NSIG ? n : -1;
    }
    std::string upper;
    for (char ch : name)
        upper += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    std::string_view s = upper;
    if (s.substr(0, 3) == "SIG") s.remove_prefix(3);
    for (int sig = 1; sig < NSIG; ++sig)
        if (const char* abbrev = sigabbrev_np(sig); abbrev && s == abbrev) return sig;
    return -1;
}

std::string signal_name(int sig) {
    const char* abbrev = sigabbrev_np(sig);
    return abbrev ? std::string(abbrev) : std::to_string(sig);
}

} // namespace keel

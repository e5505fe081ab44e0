// Signal names both ways, with one rule set for every place a user names a signal (keel kill
// -s, keel runtime kill, a service's stop_signal): "TERM", "SIGTERM", "term" and "15" all
// mean SIGTERM.
#pragma once

#include <string>
#include <string_view>

namespace keel {

// The signal's number, or -1: a name with or without "SIG", in any case, or a number from 1
// to NSIG - 1.
int signal_number(std::string_view name);

// "TERM" for SIGTERM (no "SIG" prefix); the number as text for one without a name.
std::string signal_name(int sig);

} // namespace keel

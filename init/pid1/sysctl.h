// Applying the kernel hardening profile (its format is config/sysctl_profile.h): each key is
// written under /proc/sys; a value that cannot be applied is reported by name and the rest
// still apply.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "config/sysctl_profile.h"

namespace keel::pid1::sysctl {

struct Outcome {
    int applied = 0;
    int attempted = 0;                 // the profile's keys and the interfaces a default reached
    std::vector<std::string> failures; // "net.ipv4.tcp_syncookies=1: ENOENT (...)"
};
// A net.ipv{4,6}.conf.default.KEY is also written to every interface that exists already
// (the NICs the modules stage brought up), counted and reported under its own name.
Outcome apply(const config::sysctl::Profile& p, const std::string& proc_sys = "/proc/sys");

} // namespace keel::pid1::sysctl

// The kernel hardening profile (config/sysctl.yml): each key is written under /proc/sys; a
// value that cannot be applied is reported by name and the rest still apply.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace keel::pid1::sysctl {

using Profile = std::vector<std::pair<std::string, std::string>>; // in file order

Result<Profile> parse_profile(const std::string& yaml_text, const std::string& origin);

// "kernel.kptr_restrict" -> "<proc_sys>/kernel/kptr_restrict" (dots are separators; a slash
// form is accepted as is).
std::string key_path(const std::string& key, const std::string& proc_sys = "/proc/sys");

struct Outcome {
    int applied = 0;
    int attempted = 0; // the profile's keys and the interfaces a default reached
    std::vector<std::string> failures; // "net.ipv4.tcp_syncookies=1: ENOENT (...)"
};
// A net.ipv{4,6}.conf.default.KEY is also written to every interface that exists already
// (the NICs the modules stage brought up), counted and reported under its own name.
Outcome apply(const Profile& p, const std::string& proc_sys = "/proc/sys");

} // namespace keel::pid1::sysctl
